"""Checkpoints: the lab's dict, written atomically; a run rebuilt from one continues as if it
had never stopped."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from study.train.checkpoint import load_checkpoint, save_checkpoint
from study.train.config import TrialConfig
from study.train.loop import TrainingRun, evaluate

CONFIGS = {
    "sgd momentum, multistep": TrialConfig(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        schedule="multistep",
        schedule_params={"milestones": [1, 2], "gamma": 0.5},
        epochs=4,
        batch_size=16,
        precision="fp32",
    ),
    "adam, cosine with warm-up": TrialConfig(
        optimizer="adam",
        lr=3e-3,
        schedule="cosine",
        warmup_epochs=0.5,
        epochs=4,
        batch_size=16,
        precision="fp32",
    ),
    "sgd, one_cycle (momentum cycle)": TrialConfig(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        schedule="one_cycle",
        epochs=4,
        batch_size=16,
        precision="fp32",
    ),
    "adam, plateau": TrialConfig(
        optimizer="adam",
        lr=1e-2,
        schedule="plateau",
        schedule_params={"patience": 0},
        epochs=4,
        batch_size=16,
        precision="fp32",
    ),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_a_run_resumed_from_a_checkpoint_continues_the_uninterrupted_run(
    name, tiny_data, tmp_path
):
    config = CONFIGS[name]
    whole = TrainingRun(config, tiny_data)
    while not whole.finished:
        whole.train_epoch()

    first = TrainingRun(config, tiny_data)
    first.train_epoch()
    first.train_epoch()
    path = save_checkpoint(first, tmp_path / "mid.pt")
    del first
    checkpoint = load_checkpoint(path)
    assert checkpoint.epoch == 2 and checkpoint.config == config
    resumed = checkpoint.resume(tiny_data)
    while not resumed.finished:
        resumed.train_epoch()

    def figures(run):
        return [(e.train_loss, e.eval_accuracy, e.lr, e.momentum) for e in run.history]

    assert figures(resumed) == figures(whole)  # same batches, dropout, schedule: bit for bit
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_loaded_model_gives_the_recorded_accuracy(tiny_data, tmp_path):
    run = TrainingRun(CONFIGS["adam, cosine with warm-up"], tiny_data)
    for _ in range(3):
        stats = run.train_epoch()
    checkpoint = load_checkpoint(save_checkpoint(run, tmp_path / "c.pt"))
    assert not checkpoint.model.training
    _, accuracy = evaluate(checkpoint.model, tiny_data.eval_x, tiny_data.eval_y)
    assert accuracy == stats.eval_accuracy
    assert [e.eval_accuracy for e in checkpoint.history] == [e.eval_accuracy for e in run.history]
    # The optimizer comes back with its state (Adam's moments), on its parameters.
    state = checkpoint.optimizer.state_dict()["state"]
    assert state and all("exp_avg" in s for s in state.values())


def test_the_file_is_the_labs_dict_and_is_written_atomically(tiny_data, tmp_path):
    run = TrainingRun(CONFIGS["sgd momentum, multistep"], tiny_data)
    run.train_epoch()
    path = save_checkpoint(run, tmp_path / "deep" / "c.pt")
    payload = torch.load(path, weights_only=False)
    assert {"parameters", "optimizer", "epoch"} <= set(payload)  # the lab's keys
    assert payload["epoch"] == 1 and payload["config"]["optimizer"] == "sgd"
    assert set(payload["parameters"]) == set(run.model.state_dict())
    run.train_epoch()
    save_checkpoint(run, path)  # replaced, never half-written: no temporary file is left
    assert torch.load(path, weights_only=False)["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]


def test_loading_something_else_says_what_it_is(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'none.pt'} does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"parameters": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a checkpoint of this toolkit"):
        load_checkpoint(tmp_path / "other.pt")


def _finished_checkpoint(config: TrialConfig, data, path):
    run = TrainingRun(config, data)
    while not run.finished:
        run.train_epoch()
    save_checkpoint(run, path)
    with pytest.raises(RuntimeError, match=r"resume\(data, epochs=N\)"):
        run.train_epoch()
    return load_checkpoint(path)


def test_a_finished_run_trains_on_for_more_epochs(tiny_data, tmp_path):
    config = TrialConfig(optimizer="sgd", lr=0.05, momentum=0.9, epochs=2, batch_size=16,
                         precision="fp32")
    checkpoint = _finished_checkpoint(config, tiny_data, tmp_path / "c.pt")
    run = checkpoint.resume(tiny_data, epochs=4)
    assert run.config.epochs == 4 and len(run.history) == 2
    while not run.finished:
        assert run.train_epoch() is not None
    assert [e.epoch for e in run.history] == [1, 2, 3, 4]
    # Continuing is the run a 4-epoch run would have been (constant schedule).
    whole = TrainingRun(dataclasses.replace(config, epochs=4), tiny_data)
    while not whole.finished:
        whole.train_epoch()
    for mine, theirs in zip(run.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    with pytest.raises(ValueError, match="above the 2 trained"):
        checkpoint.resume(tiny_data, epochs=2)


def test_a_checkpoint_is_fine_tuned_at_another_learning_rate(tiny_data, tmp_path):
    config = TrialConfig(optimizer="adam", lr=3e-3, schedule="cosine", warmup_epochs=0.5,
                         head_lr_mult=10.0, epochs=2, batch_size=16, precision="fp32")
    checkpoint = _finished_checkpoint(config, tiny_data, tmp_path / "c.pt")
    run = checkpoint.resume(tiny_data, epochs=3, lr=1e-4)
    assert run.config.schedule == "constant" and run.config.lr == 1e-4
    rates = sorted(group["lr"] for group in run.optimizer.param_groups)
    assert rates[0] == pytest.approx(1e-4) and rates[-1] == pytest.approx(1e-3)  # head x10
    assert run.optimizer.state  # Adam's moments carried over
    stats = run.train_epoch()
    assert stats is not None and stats.lr == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="positive learning rate"):
        checkpoint.resume(tiny_data, epochs=3, lr=0.0)


def test_fine_tuning_after_a_plateau_trains_at_the_rate_asked_for(tiny_data, tmp_path):
    config = TrialConfig(optimizer="adam", lr=1e-2, schedule="plateau",
                         schedule_params={"patience": 0}, epochs=4, batch_size=16,
                         precision="fp32")
    checkpoint = _finished_checkpoint(config, tiny_data, tmp_path / "c.pt")
    assert checkpoint.optimizer.param_groups[0]["lr"] < 1e-2  # the plateau cut it
    run = checkpoint.resume(tiny_data, epochs=5, lr=1e-3)
    rates = [g["lr"] for g in run.optimizer.param_groups]
    assert rates == pytest.approx([1e-3] * len(rates))
    assert run.train_epoch().lr == pytest.approx(1e-3)
