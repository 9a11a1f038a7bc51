"""The layers hold: training imports no Optuna, analysis no torch, and no import runs back up.

Each check runs in a fresh interpreter, so modules other tests loaded do not hide an import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _loaded_after(code: str, prefixes: tuple[str, ...]) -> list[str]:
    probe = (
        f"import sys\n{code}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules if m.startswith({prefixes!r})}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import study.train",
        "from study.config import TrialConfig",
        "from study import fit, load_mnist, TrialConfig",
    ],
)
def test_training_without_a_study_loads_no_optuna(code):
    assert _loaded_after(code, ("optuna", "search_spaces", "analysis")) == []


@pytest.mark.parametrize(
    "code", ["import analysis", "import analysis.report", "import study.records"]
)
def test_reading_a_study_loads_no_torch(code):
    assert _loaded_after(code, ("torch", "torchvision")) == []


# Layers from the bottom up: a module may import only from its own layer or below.
TRAINING = {"registry", "config", "data", "model", "optim", "schedules", "train"}
CONTRACT = {"records", "storage"}


def _layer(module: str) -> int:
    package, _, name = module.partition(".")
    if package == "study" and name in TRAINING | CONTRACT | {""}:
        return 0
    if package == "search_spaces":
        return 1
    if package == "analysis":
        return 1
    return 2  # study.objective, samplers, pruners, runner, summary, run


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("study", "search_spaces", "analysis")}


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for package in ("study", "search_spaces", "analysis"):
        for path in sorted((REPO / package).glob("*.py")):
            module = f"{package}.{path.stem}" if path.stem != "__init__" else package
            for target in _imports(path):
                if _layer(target) > _layer(module):
                    upward.append(f"{module} -> {target}")
                training = package == "study" and path.stem in TRAINING
                if training and target.split(".")[0] != "study":
                    upward.append(f"{module} -> {target} (training imports only training)")
                if (
                    package == "analysis"
                    and target.startswith("study")
                    and target not in ("study", "study.records", "study.storage")
                ):
                    upward.append(f"{module} -> {target} (analysis reads the contract only)")
    assert upward == []
