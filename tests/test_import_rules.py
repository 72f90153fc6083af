"""The import rules of the layout (docs/contracts.md, "Packages"), checked by walking the imports.

Every ``.py`` file of ``service/`` and ``training/`` is parsed (``ast``), and every import is
collected wherever it is written: at the top, inside functions (the lazy ones), under
``TYPE_CHECKING``, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal
name.
``from A import b`` counts as importing both ``A`` and ``A.b`` (``b`` may be a submodule), and
relative imports are resolved against the file's package.

- ``service/`` (the runtime) never imports ``training``, ``torch``, ``onnx`` (the exporter;
  ``onnxruntime`` is fine) or ``ccrl`` (the command line, which sits above it).
- ``service/`` outside ``service/api/`` never imports ``service.api``: the web layer sits on the
  runtime, not under it.
- ``training/`` never imports ``service.api`` or ``ccrl``.
- ``service/`` never imports ``batch``, ``dask`` or ``distributed``: the service does not depend on
  Dask; ``batch/`` (the corpus jobs on Dask) runs the runtime and never imports ``torch``, ``onnx``
  or ``ccrl``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Rule:
    """Modules under ``scope`` (except under ``exempt``) never import any module under
    ``forbidden``."""

    scope: str
    forbidden: tuple[str, ...]
    why: str
    exempt: str | None = None

    def applies_to(self, module: str) -> bool:
        return _under(module, self.scope) and not (self.exempt and _under(module, self.exempt))


RULES = (
    Rule(
        "service",
        ("training", "torch", "onnx", "ccrl"),
        "the runtime needs neither the offline side nor the command line above it",
    ),
    Rule(
        "service",
        ("service.api",),
        "the web layer sits on the runtime, not under it",
        exempt="service.api",
    ),
    Rule("training", ("service.api", "ccrl"), "the offline side never needs the API or the CLI"),
    Rule(
        "service",
        ("batch", "dask", "distributed"),
        "the service does not depend on Dask (the batch jobs sit beside it)",
    ),
    Rule("batch", ("torch", "onnx", "ccrl"), "the corpus jobs run the runtime, without torch"),
)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _resolve(module: str | None, level: int, package: str) -> str:
    """The absolute name of ``from {'.' * level}{module} import ...`` written in ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module name that ``source`` (the text of ``module``) may import, lazy ones included."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def _is_dynamic_import(func: ast.expr) -> bool:
    """``importlib.import_module``, ``import_module`` or ``__import__``."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in {"import_module", "__import__"}


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """``"module imports name (forbidden: prefix; why)"`` for each import of ``source`` that breaks
    a rule."""
    found = []
    names = imported_names(source, module, is_package=is_package)
    for rule in RULES:
        if not rule.applies_to(module):
            continue
        for name in sorted(names):
            for prefix in rule.forbidden:
                if _under(name, prefix):
                    found.append(f"{module} imports {name} (forbidden: {prefix}; {rule.why})")
    return found


def _sources(package: str) -> list[tuple[Path, str, bool]]:
    """(file, module name, is a package) for every ``.py`` file under ``ROOT/package``."""
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        out.append((path, ".".join(parts[:-1] if is_package else parts), is_package))
    return out


@pytest.mark.parametrize("package", ["service", "training", "batch"])
def test_the_code_follows_the_import_rules(package: str) -> None:
    sources = _sources(package)
    assert len(sources) >= 10  # the walk found the package's files
    broken = [
        v
        for path, module, is_package in sources
        for v in violations(path.read_text(encoding="utf-8"), module, is_package=is_package)
    ]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    ("module", "source", "imported"),
    [
        ("service.scorer", "import torch\n", "torch"),
        ("service.scorer", "import torch.nn as nn\n", "torch"),
        (
            "service.scorer",
            "def f():\n    from training.candidates import train_model\n",
            "training",
        ),
        ("service.scorer", "import onnx\n", "onnx"),
        ("service.scorer", "from ccrl.cli import app\n", "ccrl"),
        ("service.bundle", "from service.api.server import run_server\n", "service.api"),
        ("service.bundle", "from service import api\n", "service.api"),
        ("service.bundle", "from .api import routes\n", "service.api"),
        ("service.stores.redis", "from ..api.app import create_app\n", "service.api"),
        ("service", "from . import api\n", "service.api"),
        (
            "service.vocab",
            "import importlib\nimportlib.import_module('training.synth')\n",
            "training",
        ),
        ("service.vocab", "if TYPE_CHECKING:\n    import torch\n", "torch"),
        (
            "training.demo",
            "def f():\n    from service.api.server import run_server\n",
            "service.api",
        ),
        ("training.pipeline", "from ccrl import offline\n", "ccrl"),
        ("service.scorer", "from distributed import Client\n", "distributed"),
        ("service.stores.redis", "from batch.redis_index import write_index\n", "batch"),
        ("batch.worker", "import torch\n", "torch"),
    ],
)
def test_a_forbidden_import_is_reported(module: str, source: str, imported: str) -> None:
    found = violations(source, module, is_package=module == "service")
    assert any(
        f.startswith(f"{module} imports ") and f"(forbidden: {imported};" in f for f in found
    )


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("service.scorer", "import onnxruntime as ort\nimport xgboost\n"),
        ("service.scorer", "from service.bundle import load_bundle\nfrom .features import x\n"),
        ("service.api.server", "from service.api.app import create_app\nfrom . import routes\n"),
        ("service.api.app", "from service.scorer import Scorer\n"),
        ("training.export", "import onnx\nimport torch\nfrom training.ccrl import CcrlModel\n"),
        ("training.demo", "from service.bundle import load_bundle\n"),
        ("ccrl.demo", "from training.demo import build_demo\nfrom service.api import server\n"),
    ],
)
def test_an_allowed_import_is_not_reported(module: str, source: str) -> None:
    assert violations(source, module) == []
