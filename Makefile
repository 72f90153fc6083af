# The README's two commands are `make serve` (the main job) and `make test` (the whole suite).
# Both create .venv on first use and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `cpu` (onnxruntime) or `gpu` (onnxruntime-gpu): they provide the same module, never both.
ORT ?= cpu
STAMP := $(VENV)/.installed-$(ORT)
DEMO_DATA ?= data/demo
DEMO_BUNDLE ?= models/demo
HOST ?= 127.0.0.1
PORT ?= 8000
SOAK_MINUTES ?= 5

.PHONY: venv serve test test-deps lint bench bench-quick bench-deps soak clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The pinned CPU build of torch first: it installs from local disk in seconds, where an
	# unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	@if [ "$(ORT)" = gpu ]; then $(BIN)/python -m pip uninstall -q -y onnxruntime || true; \
	 else $(BIN)/python -m pip uninstall -q -y onnxruntime-gpu || true; fi
	$(BIN)/python -m pip install -q -e ".[$(ORT),train,load,dev,dask]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# The main job: build the demo corpus and bundle when missing, then serve them.
serve: $(STAMP)
	$(BIN)/ccrl demo --data $(DEMO_DATA) --bundle $(DEMO_BUNDLE) --host $(HOST) --port $(PORT)

# Redis (started when not running), promtool and Chromium, installed with apt-get when missing.
test-deps:
	@bash scripts/ensure-test-deps.sh

# CCRL_REQUIRE_PROMTOOL / CCRL_REQUIRE_BROWSER: the suite fails, rather than skips, the promtool
# checks and the browser test when their tools are missing.
test: $(STAMP) test-deps
	CCRL_REQUIRE_PROMTOOL=1 CCRL_REQUIRE_BROWSER=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The serving-speed benchmark (loadtests/README.md): the HTTP service against the bare scorer on
# the demo bundle, with hey; writes loadtests/results/ and the READMEs' tables. About 3 minutes
# (bench) or 2 (bench-quick) on 2 cores: run it on an otherwise idle machine.
$(DEMO_BUNDLE)/manifest.json: | $(STAMP)
	$(BIN)/ccrl demo --data $(DEMO_DATA) --bundle $(DEMO_BUNDLE) --build-only

bench-deps:
	@bash scripts/ensure-bench-deps.sh $(BIN)/python

bench: $(STAMP) bench-deps $(DEMO_BUNDLE)/manifest.json
	$(BIN)/python -m loadtests.bench_http --preset full --bundle $(DEMO_BUNDLE)

bench-quick: $(STAMP) bench-deps $(DEMO_BUNDLE)/manifest.json
	$(BIN)/python -m loadtests.bench_http --preset quick --bundle $(DEMO_BUNDLE)

# A steady load on a real `ccrl serve` of the demo bundle for SOAK_MINUTES (default 5): errors,
# p50/p99 and server memory per window as a table and a PNG in loadtests/results/soak/; fails on any
# error or on memory growth (loadtests/soak.py).
soak: $(STAMP)
	@test -f $(DEMO_BUNDLE)/manifest.json || \
	    $(BIN)/ccrl demo --data $(DEMO_DATA) --bundle $(DEMO_BUNDLE) --build-only
	$(BIN)/python -m loadtests.soak --bundle $(DEMO_BUNDLE) --minutes $(SOAK_MINUTES) \
	    --out loadtests/results/soak

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
