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
        "import study.train.loop",
        "from study.train.config import TrialConfig",
        "from study import fit, load_mnist, TrialConfig",
    ],
)
def test_training_without_a_study_loads_no_optuna(code):
    assert _loaded_after(code, ("optuna", "search_spaces", "analysis")) == []


@pytest.mark.parametrize(
    "code",
    [
        "import analysis",
        "import analysis.report",
        "import study.store.records",
        "import study.search.interrupts",  # the Ctrl-C handler goes in before torch loads
    ],
)
def test_reading_a_study_loads_no_torch(code):
    assert _loaded_after(code, ("torch", "torchvision")) == []


#: One rule per folder: what the modules in it may import from this project (a module may
#: always import from its own folder). Bottom up: training and the database contract stand on
#: nothing; search spaces on training and the records; the search on training, the contract and
#: the spaces; analysis reads the contract only; the commands at ``study/`` use everything.
ALLOWED = {
    "study/train": ("study.lazy",),
    "study/store": ("study.lazy",),
    "search_spaces": ("study.train", "study.store"),
    "study/search": ("study.lazy", "study.train", "study.store", "search_spaces"),
    "analysis": ("study.lazy", "study.store"),
    "study": ("study", "search_spaces", "analysis"),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("study", "search_spaces", "analysis")}


def _within(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_every_folder_imports_only_its_own_layer_or_below():
    breaking = []
    for folder, allowed in ALLOWED.items():
        own = folder.replace("/", ".")
        for path in sorted((REPO / folder).glob("*.py")):
            for target in _imports(path):
                if folder != "study" and not _within(target, (own, *allowed)):
                    breaking.append(f"{folder}/{path.name} -> {target}")
    assert breaking == []


def test_the_layer_rules_cover_every_folder_of_code():
    folders = {
        str(path.parent.relative_to(REPO))
        for package in ("study", "search_spaces", "analysis")
        for path in (REPO / package).rglob("*.py")
    }
    assert folders == set(ALLOWED)
