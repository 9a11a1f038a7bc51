"""The toolkit as a user installs it: a wheel in a fresh virtual environment, run from a
folder that is not the checkout (the MNIST files travel inside the package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "studies",
    "reports",
    "checkpoints",
    "results",
    ".ipynb_checkpoints",
)


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_runs_a_trial_from_any_folder(tmp_path):
    # Build from a copy, so the checkout gets no build/ folder.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("optstudy-*.whl")

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=tmp_path,
    )
    # The dependencies (torch, Optuna, ...) come from this environment, added as a plain
    # path: its own .pth files (the editable install of the checkout) are not read.
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=tmp_path,
        ).strip()
    )
    (site / "outer.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STUDY_DATA_DIR")}
    where = _run(
        [str(python), "-c", "import study; print(study.__file__)"], cwd=elsewhere, env=env
    )
    assert Path(where.strip()).is_relative_to(fresh), where
    assert (site / "study" / "mnist" / "train-images-idx3-ubyte.gz").is_file()

    output = _run(
        [
            str(python),
            "-m",
            "study.run",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--train-size",
            "512",
            "--workers",
            "1",
            "--threads",
            "1",
        ],
        cwd=elsewhere,
        env=env,
    )
    assert "1 finished of target 1" in output
    assert (elsewhere / "studies" / "default.db").is_file()
