"""Search spaces written in TOML: read, checked whole, written back, run."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from conftest import QUICK

from search_spaces import get_space, list_spaces
from search_spaces.space_file import (
    EXAMPLES,
    SpaceFileError,
    example_spaces,
    file_epochs,
    load_space,
    space_to_toml,
)
from study.run import main
from study.train.config import TrialConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent

SMALL = """
name = "small"
pruner = "none"

[optimizers.sgd]
lr = { low = 1e-2, high = 0.5, log = true }
momentum = 0.9

[optimizers.adam]
lr = { low = 1e-4, high = 1e-2, log = true }
beta1 = { choices = [0.8, 0.9] }

[schedules.constant]
[schedules.cosine]
"""


def write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list_spaces())
def test_every_registered_space_survives_a_round_trip_through_toml(tmp_path, name):
    space = get_space(name)
    path = write(tmp_path, space_to_toml(space, epochs=5), name="mine.toml")
    again = load_space(path)
    # Its own study: named after the file, never after the space it was printed from.
    assert again.name == "mine" and again.pruner == space.pruner
    # The same space at other run lengths too: what follows the epochs stays a formula.
    for epochs in (3, 5, 15):
        assert load_space(path, epochs=epochs).definition(epochs) == space.definition(epochs)


def test_a_printed_space_takes_any_epochs_the_built_in_one_takes(tmp_path):
    text = space_to_toml(get_space("default"), epochs=5)
    assert 'high = "min(1.0, epochs / 2)"' in text and "\nname =" not in text
    path = write(tmp_path, text)
    one_epoch = load_space(path, epochs=1)  # a 1.0 warm-up printed for 5 epochs would not be
    assert one_epoch.definition(1) == get_space("default").definition(1)
    assert one_epoch.distributions(1)["warmup_epochs"].high == 0.5
    assert one_epoch.distributions(1)["step_epochs"].high == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"epochs ** 2"', "'epochs ** 2' is not arithmetic in epochs (Pow); use numbers"),
        ('"__import__(epochs)"', "is not arithmetic in epochs (__import__(epochs))"),
        ('"epochs / (epochs - 2)"', "shared.warmup_epochs at 2 epochs"),
    ],
)
def test_a_bad_formula_names_its_key_and_what_a_formula_may_hold(tmp_path, value, message):
    path = write(tmp_path, f"[optimizers.sgd]\n[shared]\nwarmup_epochs = {{ low = 0.0, "
                           f"high = {value} }}\n")
    with pytest.raises(SpaceFileError) as err:
        load_space(path, epochs=2)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_file_space_samples_what_it_declares(tmp_path):
    space = load_space(write(tmp_path, SMALL))
    assert space.name == "small" and space.optimizer_names == ("sgd", "adam")
    optuna_study = optuna.create_study(direction="maximize")
    for _ in range(6):
        trial = optuna_study.ask()
        config = space.config_for(trial, TrialConfig(epochs=2))
        if config.optimizer == "sgd":
            assert 1e-2 <= config.lr <= 0.5 and config.momentum == 0.9
        else:
            assert 1e-4 <= config.lr <= 1e-2 and config.beta1 in (0.8, 0.9)
        assert config.schedule in ("constant", "cosine")
        optuna_study.tell(trial, 0.5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nme = 'x'\n[optimizers.sgd]\n", "nme: unknown key; a space file has: name,"),
        ("[optimizers.lion]\n", "optimizers.lion: unknown optimizer; choose among: sgd"),
        ("[optimizers.sgd]\nlr = { low = 1, high = 0.1 }\n", "low = 1, high = 0.1"),
        ("[optimizers.sgd]\nlr = { low = 0, high = 1, log = true }\n", "log = true needs low > 0"),
        ("[optimizers.sgd]\nlr = { lo = 0.1, high = 1 }\n", "unknown key 'lo'"),
        ("[optimizers.sgd]\nbatch_size = 32\n", "optimizers.sgd.batch_size: not an optimizer"),
        ("[optimizers.adam]\nmomentum = 0.9\n", "optimizers.adam with schedules.constant"),
        ("[optimizers.sgd]\nmomentum = { low = 0.5, high = 1.5 }\n", "momentum"),
        ("[optimizers.sgd]\n[schedules.wavy]\n", "schedules.wavy: unknown schedule; choose"),
        ("[optimizers.sgd]\n[configs.a]\noptimizer = 'sgd'\n", "cannot be mixed"),
        ("name = 'x'\n", "declare at least one [optimizers.NAME]"),
        ("[optimizers.sgd\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_names_the_key_the_value_and_what_is_allowed(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpaceFileError) as err:
        load_space(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_a_bad_file_through_the_command_line_is_one_line_and_exit_2(in_tmp, capsys):
    write(in_tmp, "[optimizers.lion]\n")
    assert main(["--space", "space.toml", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "--space space.toml:" in err and "unknown optimizer" in err
    assert err.count("\n") == 1
    assert not (in_tmp / "studies").exists()
    assert main(["--space", "missing.toml"]) == 2
    assert f"{in_tmp / 'missing.toml'} does not exist" in capsys.readouterr().err


def test_print_space_writes_a_file_the_command_line_reads_back(in_tmp, capsys):
    assert main(["--print-space", "--optimizers", "sgd,adam", "--epochs", "3"]) == 0
    text = capsys.readouterr().out
    assert "[optimizers.sgd]" in text and "[optimizers.rmsprop]" not in text
    space = load_space(write(in_tmp, text))
    assert space.optimizer_names == ("sgd", "adam")
    assert space.definition(3) == get_space("default").restrict(["sgd", "adam"]).definition(3)
    assert not (in_tmp / "studies").exists()  # printing runs nothing


def test_the_shipped_examples_are_read_by_name_from_any_folder(in_tmp):
    assert example_spaces() == ["lab-multistep.toml"]
    by_path = load_space(REPO / "search_spaces" / "examples" / "lab-multistep.toml")
    assert load_space("lab-multistep.toml").definition(15) == by_path.definition(15)
    assert file_epochs("lab-multistep.toml") == 15
    # a file of that name in the current folder is the one read
    write(in_tmp, SMALL, name="lab-multistep.toml")
    assert load_space("lab-multistep.toml").name == "small"
    # the examples ship in the wheel: package-data names them
    with open(REPO / "pyproject.toml", "rb") as fh:
        package_data = tomllib.load(fh)["tool"]["setuptools"]["package-data"]
    assert any(EXAMPLES.glob(pattern.removeprefix("examples/"))
               for pattern in package_data["search_spaces"])


def test_the_shipped_lab_example_is_the_labs_multistep_run():
    space = load_space(EXAMPLES / "lab-multistep.toml")
    (config,) = space.configs.values()
    assert config["schedule"] == "multistep"
    assert config["schedule_params"] == {"milestones": [6, 11], "gamma": 0.1}
    optuna_study = optuna.create_study(direction="maximize")
    space.enqueue_fixed_trials(optuna_study, 1)
    built = space.config_for(optuna_study.ask(), TrialConfig(epochs=15))
    assert (built.optimizer, built.lr, built.momentum, built.weight_decay) == (
        "sgd",
        0.1,
        0.9,
        5e-4,
    )
    assert built.schedule == "multistep" and built.epochs == 15


@pytest.mark.slow
def test_the_printed_default_space_runs_as_printed_beside_the_default_study(in_tmp, capsys):
    tiny = ["--train-size", "500", "--batch-size", "100", "--workers", "1", "--threads", "1"]
    assert main(["--trials", "1", *tiny]) == 0  # make run: the study 'default'
    capsys.readouterr()
    assert main(["--print-space"]) == 0
    write(in_tmp, capsys.readouterr().out, name="my-space.toml")
    # The README's recipe, unedited, and at another run length than it was printed for.
    assert main(["--space", "my-space.toml", "--trials", "1", "--epochs", "1", *tiny]) == 0
    assert "Study 'my-space'" in capsys.readouterr().out
    mine = optuna.load_study(study_name="my-space", storage="sqlite:///studies/my-space.db")
    assert mine.user_attrs["epochs"] == 1 and len(mine.trials) == 1
    assert len(optuna.load_study(study_name="default",
                                 storage="sqlite:///studies/default.db").trials) == 1


@pytest.mark.slow
def test_a_study_from_a_file_runs_and_refuses_an_edited_file(in_tmp, capsys):
    path = write(in_tmp, "epochs = 2\n" + SMALL)
    assert main(["--space", "space.toml", "--trials", "2", *QUICK]) == 0
    optuna_study = optuna.load_study(study_name="small", storage="sqlite:///studies/small.db")
    assert optuna_study.user_attrs["epochs"] == 2  # the file's epochs
    assert {t.params["optimizer"] for t in optuna_study.trials} == {"sgd", "adam"}
    path.write_text(path.read_text().replace("high = 0.5", "high = 0.9"))
    capsys.readouterr()
    assert main(["--space", "space.toml", "--trials", "3", *QUICK]) == 2
    err = capsys.readouterr().err
    assert "optimizers changed since study 'small' was created" in err


SIGN_SGD = """
import torch


class SignSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(p.grad.sign(), alpha=group["lr"])
"""

#: A space of one optimizer of the user's own (my_optim.SignSGD) with no batched update.
SIGNSGD_SPACE = """
[custom_optimizers.signsgd]
class = "my_optim:SignSGD"
default_lr = 1e-3

[optimizers.signsgd]
lr = { low = 1e-4, high = 3e-4, log = true }
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's on the Python path, and the registry left as it was."""
    from study.train.optim import list_optimizers, unregister

    (tmp_path / "my_optim.py").write_text(SIGN_SGD)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(list_optimizers())
    yield tmp_path
    for name in set(list_optimizers()) - before:
        unregister(name)


def test_an_optimizer_named_by_import_path_is_registered_searched_and_trained(
    user_module, tiny_data
):
    from study.train.loop import fit

    text = SIGNSGD_SPACE
    space = load_space(write(user_module, text))
    load_space(write(user_module, text))  # read again (a worker, a resume): the same class
    optuna_study = optuna.create_study(direction="maximize")
    config = space.config_for(optuna_study.ask(), TrialConfig(epochs=2, batch_size=32))
    assert config.optimizer == "signsgd" and 1e-4 <= config.lr <= 3e-4
    result = fit(config, tiny_data)
    assert not result.diverged and len(result.history) == 2
    assert result.history[-1].train_loss < result.history[0].train_loss


@pytest.mark.parametrize(
    "table, message",
    [
        ('class = "my_optim:Nope"\ndefault_lr = 1e-3', "cannot import it"),
        ('class = "no_such_module:X"\ndefault_lr = 1e-3', "cannot import it"),
        ('class = "my_optim:torch"\ndefault_lr = 1e-3', "is not a torch.optim.Optimizer"),
        ('class = "my_optim:SignSGD"', "give class"),
        ('class = "my_optim:SignSGD"\ndefault_lr = 1e-3\nwings = 2', "unknown key 'wings'"),
    ],
)
def test_a_bad_custom_optimizer_is_named(user_module, table, message):
    path = write(user_module, f"[custom_optimizers.mine]\n{table}\n[optimizers.sgd]\n")
    with pytest.raises(SpaceFileError, match=message) as err:
        load_space(path)
    assert "custom_optimizers.mine" in str(err.value)
    text = '[custom_optimizers.adam]\nclass = "my_optim:SignSGD"\ndefault_lr = 1e-3\n'
    with pytest.raises(SpaceFileError, match="'adam' is taken by another optimizer"):
        load_space(write(user_module, text + "[optimizers.sgd]\n"))


def test_a_space_with_an_optimizer_without_a_batched_update_trains_one_trial_at_a_time(
    user_module, monkeypatch, capsys
):
    from study.run import main as run_main

    text = SIGNSGD_SPACE
    path = write(user_module, text)
    monkeypatch.chdir(user_module)
    url = f"sqlite:///{user_module / 'sign.db'}"
    common = ["--space", str(path), "--storage", url, "--study-name", "sign", "--epochs", "1",
              "--train-size", "200", "--batch-size", "100"]
    assert run_main([*common, "--cohort", "4"]) == 2
    assert "--cohort 4: optimizer 'signsgd' of the space has no batched update" in (
        capsys.readouterr().err)
    # the default: one at a time (one worker here, to keep the test in one process)
    assert run_main([*common, "--trials", "2", "--workers", "1", "--threads", "1"]) == 0
    trials = optuna.load_study(study_name="sign", storage=url).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
