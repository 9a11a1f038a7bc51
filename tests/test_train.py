from __future__ import annotations

import pytest
import torch

from study.config import TrialConfig
from study.data import load_mnist
from study.model import MLP
from study.train import fit


def test_fit_records_one_entry_per_epoch_with_the_lr_in_effect(tiny_data):
    config = TrialConfig(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        epochs=4,
        batch_size=32,
        schedule="step",
        schedule_params={"step_epochs": 2, "gamma": 0.1},
    )
    seen = []
    result = fit(config, tiny_data, on_epoch=seen.append)
    assert [s.epoch for s in result.history] == [1, 2, 3, 4]
    assert seen == list(result.history)
    assert [s.lr for s in result.history] == pytest.approx([0.05, 0.05, 0.005, 0.005])
    assert not result.diverged and result.diverged_lr is None
    assert result.final_accuracy == result.history[-1].eval_accuracy > 0.9
    assert result.test_accuracy == result.final_accuracy
    assert all(s.seconds > 0 and s.batch_size == 32 for s in result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_same_seed_same_run_other_seed_other_run(tiny_data):
    config = TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=32, seed=7)
    a, b = fit(config, tiny_data), fit(config, tiny_data)
    assert [s.train_loss for s in a.history] == [s.train_loss for s in b.history]
    c = fit(config.replace(seed=8), tiny_data)
    assert [s.train_loss for s in a.history] != [s.train_loss for s in c.history]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_huge_learning_rate_diverges_as_data_not_as_an_error(optimizer, tiny_data):
    config = TrialConfig(optimizer=optimizer, lr=1e6, epochs=3, batch_size=32)
    result = fit(config, tiny_data)
    assert result.diverged
    assert result.diverged_epoch == 1 and result.history == ()
    assert result.diverged_lr == pytest.approx(1e6)
    assert result.final_accuracy == 0.0 and result.test_accuracy is None


def test_the_lr_that_broke_it_is_the_one_in_effect(tiny_data):
    # Warm-up over 2 epochs to a huge rate: it breaks before reaching it.
    config = TrialConfig(optimizer="sgd", lr=1e8, epochs=3, batch_size=8, warmup_epochs=2)
    result = fit(config, tiny_data)
    assert result.diverged
    assert 0 < result.diverged_lr < 1e8


def test_on_epoch_can_stop_the_run(tiny_data):
    class Stop(Exception):
        pass

    def stop(stats):
        raise Stop

    with pytest.raises(Stop):
        fit(TrialConfig(epochs=3, batch_size=32), tiny_data, on_epoch=stop)


def test_fit_trains_a_given_model(tiny_data):
    model = MLP(hidden=(32,), dropout=0.0)
    result = fit(TrialConfig(epochs=1, batch_size=32), tiny_data, model=model)
    assert result.model is model


def test_mlp_layers_match_the_lab():
    names = [type(m).__name__ for m in MLP().layers]
    assert names == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [m.out_features for m in MLP().layers if hasattr(m, "out_features")] == [512, 256, 10]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_keeps_data_and_model_on_the_gpu():
    data = load_mnist(device="cuda", train_size=4096)
    assert data.train_x.is_cuda and data.eval_x.is_cuda
    result = fit(TrialConfig(optimizer="adam", lr=1e-3, epochs=2, batch_size=128), data)
    assert next(result.model.parameters()).is_cuda
    assert not result.diverged and result.final_accuracy > 0.8
    diverged = fit(TrialConfig(optimizer="sgd", lr=1e7, epochs=1, batch_size=128), data)
    assert diverged.diverged and diverged.diverged_lr == pytest.approx(1e7)
