"""What :mod:`loadtests.bench_http` writes: ``latest.json``, the PNG curves and the markdown tables.

Tables go between markers in the READMEs given, each block rewritten whole on every run:

- ``<!-- bench:summary -->`` ... ``<!-- /bench:summary -->``: the five ratios against their
  targets and the absolute figures behind them (``README.md`` and ``loadtests/README.md``);
- ``<!-- bench:curves -->`` ... ``<!-- /bench:curves -->``: latency against frames, candidate
  classes and bank size, with the plots (``loadtests/README.md``).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (key, label, target text, passes)
TARGETS = (
    ("service_vs_bare_throughput", "service ÷ bare throughput", ">= 0.85", lambda v: v >= 0.85),
    (
        "concurrency_scaling",
        "best throughput at concurrency 4 ÷ at 1",
        ">= 1.0",
        lambda v: v >= 1.0,
    ),
    ("json_vs_binary_throughput", "JSON ÷ base64 throughput", ">= 0.5", lambda v: v >= 0.5),
    ("bank_1m_vs_1k_feature_cost", "pair features, bank 1M ÷ 1K", "<= 1.2", lambda v: v <= 1.2),
    (
        "p99_over_p50_at_70pct",
        "p99 ÷ p50 at 70% of the saturating rate",
        "<= 2.0",
        lambda v: v <= 2,
    ),
)
# (key, label): the HTTP path's cost per core, reported beside the targets (bench_http.per_core).
PER_CORE = (
    ("service_vs_bare_one_worker", "per core: 1 worker ÷ bare from 1 thread"),
    ("service_vs_bare_same_cpus", "same CPUs: the service's workers ÷ bare from as many threads"),
)
# (key, label): the machine's own spread, beside the tail (bench_http.ratios).
MACHINE = (
    ("bare_p99_over_p50", "the machine: bare scorer's own p99 ÷ p50, 1 thread, no HTTP"),
    (
        "tail_window_p50_max_over_min",
        "the machine: slowest ÷ fastest second's p50 in the paced run",
    ),
)
PLOTS = {
    "frames": "latency_frames.png",
    "classes": "latency_classes.png",
    "bank": "latency_bank.png",
}


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def summary_table(res: dict[str, Any]) -> str:
    """The ratios against their targets, then the absolute figures behind them."""
    lines = ["| figure | target | measured | |", "|---|---|---|---|"]
    for key, label, target, ok in TARGETS:
        v = res.get(key)
        mark = "-" if v is None else ("pass" if ok(v) else "**miss**")
        lines.append(f"| {label} | {target} | {_f(v)} | {mark} |")
    for key, label in (*PER_CORE, *MACHINE):
        lines.append(f"| {label} | - | {_f(res.get(key))} | |")
    head = "| | videos/s | p50 ms | p99 ms | server CPU ms/request |"
    lines += ["", head, "|---|---|---|---|---|"]
    for label, r in _rows(res):
        cpu = r.get("server_cpu_ms_per_request")
        lines.append(
            f"| {label} | {_f(r['throughput'], 0)} | {_f(r['p50_ms'])} | "
            f"{_f(r.get('p99_ms'))} | {_f(cpu)} |"
        )
    load = res["machine"]
    lines.append("")
    before = load["loadavg_before"][0]  # after the run it counts the benchmark itself
    if before > 0.5 * load["cpus"]:
        lines.append(
            f"**Measured on a busy machine** (load average {before:.1f} on {load['cpus']} CPUs "
            "before the run): other processes took CPU from the server, the client and the bare "
            "loop alike, so these figures are not the service's; re-run on an idle machine."
        )
        lines.append("")
    lines.append(
        f"`make bench` preset `{res['preset']}`, {res['video_frames']}-frame video, bundle "
        f"`{res['bundle']}`, {res['serving']['workers']} worker(s), {load['cpus']} CPUs, "
        f"load average {load['loadavg_before'][0]:.1f} before and "
        f"{load['loadavg_after'][0]:.1f} after; {res['generated']}."
    )
    return "\n".join(lines)


def _rows(res: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [
        (f"bare, {r['threads']} thread{'s' * (r['threads'] > 1)}", r) for r in res["bare"].values()
    ]
    w = res["serving"]["workers"]
    other = res.get("http_other_workers", {}).get("workers")
    for key, name in (("http", f"{w} worker(s)"), ("http_other_workers", f"{other} worker(s)")):
        if key not in res:
            continue
        for c, r in res[key]["b64"].items():
            rows.append((f"HTTP base64, {name}, concurrency {c}", r))
        for c, r in res[key].get("json", {}).items():
            rows.append((f"HTTP JSON floats, {name}, concurrency {c}", r))
    t = res["tail"]
    rows.append((f"HTTP base64 paced at {t['offered_rate']:.0f}/s (70%)", t))
    return rows


def curves_table(res: dict[str, Any]) -> str:
    """Latency against frames, classes (HTTP at concurrency 1 and bare) and bank size."""
    c = res["curves"]
    out = ["| frames | HTTP p50 ms | HTTP p99 ms | bare p50 ms |", "|---|---|---|---|"]
    out += [
        f"| {r['x']} | {_f(r['http_p50_ms'])} | {_f(r['http_p99_ms'])} | {_f(r['bare_p50_ms'])} |"
        for r in c["frames"]
    ]
    out += [
        "",
        "| candidate classes | HTTP p50 ms | HTTP p99 ms | bare p50 ms |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {r['x']} | {_f(r['http_p50_ms'])} | {_f(r['http_p99_ms'])} | {_f(r['bare_p50_ms'])} |"
        for r in c["classes"]
    ]
    out += ["", "| bank entries | pair features ms (60 segments x 20 classes) |", "|---|---|"]
    out += [f"| {r['x']:,} | {_f(r['features_ms'], 3)} |" for r in c["bank"]]
    plots = [f"![{k}](results/{name})" for k, name in PLOTS.items() if res.get("plots", {}).get(k)]
    if plots:
        out += ["", " ".join(plots)]
    return "\n".join(out)


def write_plots(res: dict[str, Any], out: Path) -> dict[str, str]:
    """The three PNG curves; {} when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return {}
    made = {}
    specs = {
        "frames": ("frames per video", False),
        "classes": ("candidate classes", False),
        "bank": ("bank entries", True),
    }
    for key, (xlabel, logx) in specs.items():
        rows = res["curves"][key]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        xs = [r["x"] for r in rows]
        series = (
            ("features_ms",) if key == "bank" else ("http_p50_ms", "http_p99_ms", "bare_p50_ms")
        )
        for name in series:
            ax.plot(xs, [r[name] for r in rows], marker="o", label=name.replace("_", " "))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ms")
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / PLOTS[key])
        plt.close(fig)
        made[key] = PLOTS[key]
    return made


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with what lies between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
    replaced by ``body`` (unchanged when the markers are absent)."""
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(\n<!-- /bench:{name} -->)", re.DOTALL)
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def write_report(res: dict[str, Any], out: Path, readmes: Sequence[Path]) -> None:
    """``latest.json``, the plots, and the tables in each of ``readmes`` that has the markers."""
    res["plots"] = write_plots(res, out)
    (out / "latest.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    blocks = {"summary": summary_table(res), "curves": curves_table(res)}
    for path in readmes:
        if not path.is_file():
            continue
        text = path.read_text()
        new = text
        for name, body in blocks.items():
            new = replace_block(new, name, body)
        if new != text:
            path.write_text(new)
    print(blocks["summary"])
