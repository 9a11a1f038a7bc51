"""Shared fixtures: tiny synthetic tensors for speed, the real MNIST where behaviour needs it."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

from study.store import records
from study.train.data import Dataset, load_mnist

matplotlib.use("Agg")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs in two processes (pyproject: -n 2): each trains on one thread, so their
    # torch thread pools do not fight over the same cores.
    torch.set_num_threads(1)


def make_tiny_dataset(n_train: int = 256, n_eval: int = 128, seed: int = 0) -> Dataset:
    """Ten Gaussian blobs in 784 dimensions: learnable in a few updates."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, 784, generator=g)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = centres[y] + 0.5 * torch.randn(n, 784, generator=g)
        return x, y

    train_x, train_y = sample(n_train)
    eval_x, eval_y = sample(n_eval)
    return Dataset(train_x, train_y, eval_x, eval_y, eval_x, eval_y, eval_set="test")


@pytest.fixture
def tiny_data() -> Dataset:
    return make_tiny_dataset()


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    return load_mnist()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder, so ``studies/`` lands in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL from STUDY_TEST_POSTGRES_URL; skipped when unset, unless
    STUDY_REQUIRE_POSTGRES=1 (CI), where a missing server fails the test."""
    url = os.environ.get("STUDY_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("STUDY_REQUIRE_POSTGRES") == "1":
            pytest.fail("STUDY_REQUIRE_POSTGRES=1 but STUDY_TEST_POSTGRES_URL is not set")
        pytest.skip("set STUDY_TEST_POSTGRES_URL to run the PostgreSQL tests")
    return url


@pytest.fixture
def fresh_postgres(postgres_url):
    """A factory of brand-new, empty PostgreSQL databases (no Optuna schema yet) on the
    server of ``postgres_url``, whose role needs CREATEDB; each is dropped afterwards."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url)
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    made: list[str] = []

    def make() -> str:
        name = f"study_fresh_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_trial(
    optuna_study,
    optimizer: str,
    lr: float,
    accuracy: float | None,
    *,
    state: str = "complete",
    diverged: bool = False,
    epochs: int = 3,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    momentum: float | None = None,
    seed_accuracies: list[float] | None = None,
    source_trial: int | None = None,
):
    """Add a finished trial shaped like the ones ``study.run`` writes (known values).

    With ``seed_accuracies`` the trial trained several seeds (``--repeats``): its accuracy
    is their mean."""
    import optuna

    from study.train.config import TrialConfig

    config = TrialConfig(
        optimizer=optimizer,
        lr=lr,
        epochs=epochs,
        schedule=schedule,
        weight_decay=weight_decay,
        momentum=momentum,
    ).to_dict()
    if seed_accuracies is not None:
        accuracy = sum(seed_accuracies) / len(seed_accuracies)
    run = 0 if diverged else (epochs if state == "complete" else 1)
    curve = [accuracy - 0.01 * (run - 1 - i) for i in range(run)] if run else []
    attrs = {
        "config": config,
        "seed": len(optuna_study.trials),
        "eval_set": "test",
        "diverged": diverged,
        "eval_accuracy": curve,
        "train_loss": [0.5] * run,
        "train_accuracy": [0.9] * run,
        "lr": [lr] * run,
        "batch_size": [64] * run,
        "epoch_seconds": [1.0] * run,
    }
    if diverged:
        attrs.update(diverged_lr=lr, diverged_epoch=1)
    if seed_accuracies is not None:
        attrs["seed_accuracies"] = list(seed_accuracies)
    if source_trial is not None:  # a run of a confirmation study
        attrs["source_trial"] = source_trial
    distributions = {
        "optimizer": optuna.distributions.CategoricalDistribution(
            ["sgd", "adam", "adamw", "rmsprop"]
        ),
        f"{optimizer}_lr": optuna.distributions.FloatDistribution(1e-6, 10, log=True),
    }
    trial_state = (
        optuna.trial.TrialState.COMPLETE
        if state == "complete"
        else (optuna.trial.TrialState.PRUNED)
    )
    optuna_study.add_trial(
        optuna.trial.create_trial(
            state=trial_state,
            value=records.DIVERGED_VALUE if diverged else (curve[-1] if curve else None),
            params={"optimizer": optimizer, f"{optimizer}_lr": lr},
            distributions=distributions,
            user_attrs=attrs,
            intermediate_values=dict(enumerate(curve, start=1)),
        )
    )


#: Command-line options for a quick real study: 2000 training images, batches of 100, in this
#: process (one worker; trials in cohorts, the default).
QUICK = ["--train-size", "2000", "--batch-size", "100", "--workers", "1"]


def run_small_study(url: str, name: str, trials: int, *extra: str) -> str:
    """Run ``python -m study.run`` for a quick real 2-epoch study into ``url``; returns it."""
    from study.run import main

    argv = [
        "--trials",
        str(trials),
        "--epochs",
        "2",
        "--study-name",
        name,
        "--storage",
        url,
        *QUICK,
        *extra,
    ]
    assert main(argv) == 0
    return url


#: Learning rates in the middle of half-decade bins (the binning of the metrics is exact).
GRID_LRS = [10**e for e in (-4.25, -3.75, -3.25, -2.75, -2.25)]


def add_seeded_grid(optuna_study, seeds: int = 3) -> None:
    """A grid with ``seeds`` seeds per point (3 or 5): SGD flat (seed noise only), Adam
    peaked."""
    noise = {3: [-1, 0, 1], 5: [-1, -0.5, 0, 0.5, 1]}[seeds]
    for lr in GRID_LRS:
        add_trial(optuna_study, "sgd", lr, None,
                  seed_accuracies=[0.98 + 0.005 * e for e in noise])
    for lr, level in zip(GRID_LRS, (0.5, 0.9, 0.98, 0.9, 0.5), strict=True):
        add_trial(optuna_study, "adam", lr, None,
                  seed_accuracies=[level + 0.01 * e for e in noise])


def execute_notebook(path) -> list:
    """Run the notebook at ``path`` with its kernel in the notebook's folder, as Jupyter and
    ``jupyter execute`` do, in this process's environment; returns the code cells' outputs.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed; its message holds the error.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


def count_images(outputs: list) -> int:
    """PNG figures among a notebook's outputs."""
    return sum("image/png" in o.get("data", {}) for o in outputs)
