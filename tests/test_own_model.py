"""Your own model and data through the study: ``study.run.main(argv, data=..., model=...)`` on a
small synthetic 3-class set, recorded in SQLite and read by the report."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import nn

from analysis.report import main as report_main
from study.run import main
from study.train.config import TrialConfig
from study.train.data import DataError, Dataset, tensor_dataset
from study.train.loop import COLLAPSE_AFTER, TrainingRun, collapse_levels

FEATURES, CLASSES = 20, 3


def blobs(n_train: int = 300, n_test: int = 150) -> Dataset:
    """Three Gaussian blobs in 20 dimensions: learnable in a few updates, chance 1/3."""
    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(CLASSES, FEATURES, generator=g)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, CLASSES, (n,), generator=g)
        return centres[y] + torch.randn(n, FEATURES, generator=g), y

    return tensor_dataset(*sample(n_train), *sample(n_test))


class Factory:
    """A tiny model factory that counts the models it made."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> nn.Module:
        self.made += 1
        return nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, CLASSES))


def test_own_model_and_data_run_the_study_and_its_report(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'own.db'}"
    factory = Factory()
    argv = ["--storage", url, "--study-name", "blobs", "--trials", "6", "--epochs", "2",
            "--batch-size", "32", "--pruner", "asha", "--prune-within", "study",
            "--checkpoints", str(tmp_path / "ckpt")]
    assert main(argv, data=blobs(), model=factory) == 0
    assert "6 finished of target 6" in capsys.readouterr().out

    trials = optuna.load_study(study_name="blobs", storage=url).get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 6 and optuna.trial.TrialState.PRUNED in states
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert factory.made == 6  # one model per trial (one seed each)
    for t in trials:
        curve = t.user_attrs["eval_accuracy"]
        assert t.intermediate_values == dict(enumerate(curve, start=1))
        assert len(t.user_attrs["train_loss"]) == len(curve) == (
            2 if t.state == optuna.trial.TrialState.COMPLETE else 1)
        parameters = torch.load(t.user_attrs["checkpoint"])["parameters"]
        assert parameters["0.weight"].shape == (16, FEATURES)  # the factory's model, trained
    best = max(t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert best > 0.9  # well above chance (1/3): the model learned the blobs

    out = tmp_path / "report"
    assert report_main(["--storage", url, "--study-name", "blobs", "--out", str(out)]) == 0
    assert "blobs" in (out / "index.html").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--workers", "2"], "--workers 2: a run given its own data or model"),
    (["--data-dir", "mnist"], "--data-dir mnist: it names MNIST's files"),
    (["--cohort", "4"], "--cohort 4: cohorts train the lab's MLP on MNIST"),
])
def test_own_data_refuses_worker_processes_and_mnist_files(tmp_path, capsys, extra, message):
    argv = ["--storage", f"sqlite:///{tmp_path / 'own.db'}", "--study-name", "blobs", *extra]
    assert main(argv, data=blobs(), model=Factory()) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "own.db").exists()  # refused before any database was made


def test_own_data_needs_a_study_name(tmp_path, capsys):
    assert main(["--storage", f"sqlite:///{tmp_path / 'own.db'}"], model=Factory()) == 2
    assert "--study-name is needed" in capsys.readouterr().err


def test_a_factory_model_is_seeded_by_the_run_seed():
    data = blobs()
    config = TrialConfig(optimizer="sgd", lr=0.1, epochs=1, seed=3)

    def weights(seed: int) -> torch.Tensor:
        run = TrainingRun(config.replace(seed=seed), data, model=Factory())
        return run.model[0].weight.detach().clone()

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_tensor_dataset_splits_and_counts_classes():
    x, y = torch.randn(100, 5), torch.arange(100) % 4
    data = tensor_dataset(x, y, x[:10], y[:10], validation_fraction=0.2, train_size=50)
    assert (data.num_classes, data.eval_set, data.num_train, len(data.eval_y)) == (
        4, "validation", 50, 20)
    with pytest.raises(DataError, match="labels 0 to 3, but num_classes is 3"):
        tensor_dataset(x, y, x, y, num_classes=3)
    with pytest.raises(DataError, match="int64 class labels"):
        tensor_dataset(x, y.float(), x, y)


def test_collapse_follows_the_number_of_classes():
    assert collapse_levels(10) == (COLLAPSE_AFTER, 0.2)  # MNIST's: reached 0.5, below 2x chance
    reached, below = collapse_levels(CLASSES)
    assert 1 / CLASSES < below < 0.5 < reached  # a 3-class run at 0.6 has not collapsed
