"""Bad input to every entry point (``study.run``, ``study.confirm``, ``study.lr_range``,
``analysis.report`` and space files): refused with one line on stderr and exit code 2, no
traceback, before anything trains or is written: the folder and the study database in it are
as they were, byte for byte."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import optuna
import pytest
from conftest import add_trial

from analysis.report import main as report_main
from study.confirm import main as confirm_main
from study.lr_range import main as lr_range_main
from study.run import main as run_main

#: A server nobody answers on: a name or URL refused up front never reaches it.
PG = "postgresql://u:pw@127.0.0.1:1/db"
BAD_PORT = "postgresql://u:pw@localhost:abc/db"
#: The study database every case finds in its folder: study "s", as study.run writes one
#: (settings, complete trials), and "foreign", made by another tool.
STUDY_DB = "sqlite:///studies/s.db"
#: A run that would end in seconds were it accepted (the bad value comes after it and wins).
QUICK_RUN = ["--trials", "1", "--epochs", "1", "--train-size", "200", "--batch-size", "100",
             "--workers", "1", "--pruner", "none", "--device", "cpu"]
QUICK_RANGE = ["--optimizer", "sgd", "--train-size", "256", "--num-updates", "5",
               "--threads", "1", "--device", "cpu"]
SGD = "[optimizers.sgd]\nlr = { low = 1e-3, high = 1e-1, log = true }\n"
LONG = "n" * 300
HUGE = "n" * 5000

RUN = {
    "port": (["--storage", BAD_PORT], "is not a database URL"),
    "name-300": (["--study-name", LONG], "at most 200 characters"),
    "name-5000-postgres": (["--study-name", HUGE, "--storage", PG], "at most 200 characters"),
    "name-empty": (["--study-name", ""], "study name '' is empty"),
    "name-blank": (["--study-name", "  "], "study name '  ' is empty"),
    "name-newline": (["--study-name", "a\nb", "--storage", "sqlite:///x.db"], "'\\n'"),
    "storage-empty": (["--storage", ""], "--storage '' is empty"),
    "storage-not-url": (["--storage", "not a url"], "is not a database URL"),
    "storage-no-file": (["--storage", "sqlite://"], "names no file"),
    "storage-folder": (["--storage", "sqlite:///folder"], "is a folder"),
    "storage-not-sqlite": (["--storage", "sqlite:///file.txt"], "is not a SQLite database"),
    "storage-question-mark": (["--storage", "sqlite:///a?b.db"], "starts the URL's query"),
    "epochs-huge": (["--epochs", "1000000000000"], "--epochs: must be an integer in [1, 1000]"),
    "epochs-0": (["--epochs", "0"], "--epochs: must be an integer in [1, 1000]"),
    "epochs-word": (["--epochs", "five"], "but got 'five'"),
    "batch-huge": (["--batch-size", "1000000000"], "--batch-size: must be an integer in [1, "
                   "6000]"),
    "batch-0": (["--batch-size", "0"], "--batch-size: must be an integer in [1, 6000]"),
    "trials-0": (["--trials", "0"], "--trials: must be an integer >= 1"),
    "checkpoints-file": (["--checkpoints", "file.txt"], "is a file, not a folder"),
    "checkpoints-under-file": (["--checkpoints", "file.txt/ck"], "is a file, not a folder"),
    "checkpoints-unwritable": (["--checkpoints", "/proc/ck"], "cannot write in /proc"),
    "keep-without-checkpoints": (["--keep-checkpoints", "2"], "give --checkpoints DIR too"),
    "cohort-0": (["--cohort", "0"], "--cohort: must be an integer in [1, 1024]"),
    "cohort-huge": (["--cohort", "100000"], "about 9 MB for the lab's MLP"),
    "cohort-with-checkpoints": (["--cohort", "4", "--checkpoints", "ck"],
                                "trials trained in cohorts keep no checkpoints"),
    "optimizers-unknown": (["--optimizers", "sgd,adamz"], "unknown optimizer 'adamz'"),
    "optimizers-none": (["--optimizers", ","], "expected names like sgd,adam"),
    "space-unknown": (["--space", "nosuch"], "nosuch"),
    "space-file-missing": (["--space", "missing.toml"], "does not exist"),
    "lr-grid-reversed": (["--space", "lr-grid", "--lr-grid", "1,0.1,4"], "0 < LOW < HIGH"),
    "lr-grid-short": (["--space", "lr-grid", "--lr-grid", "1e-3,1"], "0 < LOW < HIGH"),
    "lr-grid-not-grid-space": (["--lr-grid", "1e-3,1,4"], "samples its learning rates"),
    "grid-sampler": (["--space", "lr-grid", "--sampler", "random"], "leave --sampler out"),
    "grid-trials": (["--space", "lr-grid", "--trials", "1000"], "the grid has"),
    "balanced-fixed-runs": (["--space", "lab", "--allocation", "balanced"],
                            "leave --allocation out"),
    "seed-negative": (["--seed", "-1"], "--seed: must be an integer in [0,"),
    "seed-huge": (["--seed", str(2**31)], "seeds derived from it"),
    "validation-0.9": (["--validation", "0.9"], "--validation: must be a number in [0, 0.5]"),
    "validation-nan": (["--validation", "nan"], "--validation: must be a number in [0, 0.5]"),
    "train-size-100000": (["--train-size", "100000"], "MNIST has 60000 training images"),
    "train-size-0": (["--train-size", "0"], "--train-size: must be an integer >= 1"),
    "grace-not-above-heartbeat": (["--heartbeat", "60", "--grace", "60"],
                                  "must be longer than --heartbeat"),
    "sampler-unknown": (["--sampler", "nosuch"], "nosuch"),
    "pruner-unknown": (["--pruner", "nosuch"], "nosuch"),
    "precision-unknown": (["--precision", "fp64"], "invalid choice: 'fp64'"),
    "device-unknown": (["--device", "tpu"], "invalid choice: 'tpu'"),
    "workers-0": (["--workers", "0"], "--workers: must be an integer >= 1"),
    "threads-0": (["--threads", "0"], "--threads: must be an integer >= 1"),
    "repeats-0": (["--repeats", "0"], "--repeats: must be an integer >= 1"),
    "option-misspelt": (["--epoch", "3"], "unrecognized arguments: --epoch"),
    "data-dir-missing": (["--data-dir", "missing-folder"], "missing-folder"),
    "study-of-another-tool": (["--study-name", "foreign", "--storage", STUDY_DB], "minimises"),
    "study-without-space": (["--study-name", "s", "--storage", STUDY_DB],
                            "was not created by study.run"),
}

SPACE = {
    "log-string": (SGD.replace("log = true", 'log = "false"'),
                   "optimizers.sgd.lr: log = 'false'"),
    "int-string": ('[optimizers.sgd]\nlr = 0.1\n[shared]\nbatch_size = { low = 32, high = 64, '
                   'int = "no" }\n', "shared.batch_size: int = 'no'"),
    "step-collapses-range": ("[optimizers.sgd]\nlr = { low = 1e-3, high = 1e-2, step = 1.0 }\n",
                             "holds one value"),
    "int-step-collapses-range": ("[optimizers.sgd]\nlr = 0.1\n[shared]\nbatch_size = { low = "
                                 "32, high = 64, int = true, step = 100 }\n", "holds one value"),
    "step-string": ('[optimizers.sgd]\nlr = { low = 1e-3, high = 1e-2, step = "x" }\n',
                    "step = 'x'"),
    "int-fractional-end": ("[optimizers.sgd]\nlr = 0.1\n[shared]\nbatch_size = { low = 31.5, "
                           "high = 64, int = true }\n", "whole"),
    "batch-huge": (SGD + "[shared]\nbatch_size = 1000000000\n", "shared.batch_size"),
    "batch-choice-huge": (SGD + "[shared]\nbatch_size = { choices = [64, 1000000000] }\n",
                          "shared.batch_size"),
    "config-batch-huge": ('[configs.a]\noptimizer = "sgd"\nlr = 0.1\nbatch_size = 1000000000\n',
                          "configs.a"),
    "epochs-huge": ("epochs = 1000000000000\n" + SGD, "epochs = 1000000000000"),
    "epochs-0": ("epochs = 0\n" + SGD, "epochs = 0"),
    "not-toml": ("this is = = not toml\n", "is not valid TOML"),
    "unknown-key": ("colour = 1\n" + SGD, "colour: unknown key"),
    "unknown-optimizer": ("[optimizers.adamz]\nlr = 0.1\n", "unknown optimizer"),
    "low-above-high": ("[optimizers.sgd]\nlr = { low = 1e-2, high = 1e-3 }\n", "low <= high"),
    "log-from-zero": ("[optimizers.sgd]\nlr = { low = 0.0, high = 1e-2, log = true }\n",
                      "log = true needs low > 0"),
    "unknown-range-key": ("[optimizers.sgd]\nlr = { low = 1e-3, high = 1e-2, logg = true }\n",
                          "unknown key 'logg'"),
    "empty-choices": (SGD + "nesterov = { choices = [] }\n", "at least one value"),
    "unknown-schedule": (SGD + "[schedules.zigzag]\n", "unknown schedule"),
    "name-empty": ('name = ""\n' + SGD, "name = ''"),
    "name-newline": ('name = "a\\nb"\n' + SGD, "'\\n'"),
    "name-300": (f'name = "{LONG}"\n' + SGD, "at most 200 characters"),
    "lr-grid-short": ("lr_grid = [1e-3, 1]\n" + SGD, "give [low, high, points per decade]"),
    "configs-with-ranges": ('[configs.a]\noptimizer = "sgd"\nlr = 0.1\n' + SGD,
                            "cannot be mixed"),
    "formula-refused": (SGD + '[shared]\nwarmup_epochs = { low = 0.0, high = "epochs ** 2" }\n',
                        "is not arithmetic in epochs"),
    "not-a-setting": (SGD + "colour = 1\n", "not an optimizer setting"),
    "nothing-to-search": ('name = "empty"\n', "declare at least one"),
    "custom-class-missing": ('[custom_optimizers.x]\nclass = "nosuch_module:X"\ndefault_lr = '
                             '0.1\n' + SGD, "cannot import it"),
}

CONFIRM = {
    "port": (["--study-name", "s", "--storage", BAD_PORT], "is not a database URL"),
    "name-300": (["--study-name", LONG], "at most 200 characters"),
    "name-5000-postgres": (["--study-name", HUGE, "--storage", PG], "at most 200 characters"),
    "name-empty": (["--study-name", ""], "study name '' is empty"),
    "name-newline": (["--study-name", "a\nb", "--storage", STUDY_DB], "'\\n'"),
    "storage-empty": (["--study-name", "s", "--storage", ""], "--storage '' is empty"),
    "seeds-huge": (["--study-name", "s", "--seeds", "1000000000"],
                   "--seeds: must be an integer in [1, 1000]"),
    "cohort-0": (["--study-name", "s", "--cohort", "0"],
                 "--cohort: must be an integer in [1, 1024]"),
    "seeds-0": (["--study-name", "s", "--seeds", "0"], "--seeds: must be an integer in [1,"),
    "seeds-word": (["--study-name", "s", "--seeds", "ten"], "but got 'ten'"),
    "top-0": (["--study-name", "s", "--top", "0"], "--top: must be an integer >= 1"),
    "data-dir-missing": (["--study-name", "s", "--data-dir", "missing-folder"],
                         "missing-folder"),
    "confirmation-study": (["--study-name", "s.confirm"], "is a confirmation study already"),
    "unknown-study": (["--study-name", "nope", "--storage", STUDY_DB], "no study 'nope'"),
    "no-database": (["--study-name", "nope"], "does not exist"),
    "study-of-another-tool": (["--study-name", "foreign", "--storage", STUDY_DB],
                              "was not made by python -m study.run"),
    "no-study-name": ([], "the following arguments are required: --study-name"),
    "threads-0": (["--study-name", "s", "--threads", "0"], "--threads: must be an integer"),
    "device-unknown": (["--study-name", "s", "--device", "tpu"], "invalid choice: 'tpu'"),
}

LR_RANGE = {
    "port": (["--storage", BAD_PORT], "is not a database URL"),
    "name-300": (["--study-name", LONG], "at most 200 characters"),
    "name-5000-postgres": (["--study-name", HUGE, "--storage", PG], "at most 200 characters"),
    "name-empty": (["--study-name", ""], "study name '' is empty"),
    "name-newline": (["--study-name", "a\nb", "--storage", "sqlite:///lr.db"], "'\\n'"),
    "storage-empty": (["--storage", ""], "--storage '' is empty"),
    "storage-folder": (["--storage", "sqlite:///folder"], "is a folder"),
    "batch-huge": (["--batch-size", "1000000000"], "--batch-size: must be an integer in [1, "
                   "6000]"),
    "num-updates-huge": (["--num-updates", "1000000000"],
                         "--num-updates: must be an integer in [2, 10000]"),
    "num-updates-1": (["--num-updates", "1"], "--num-updates: must be an integer in [2,"),
    "train-size-100000": (["--train-size", "100000"],
                          "--train-size: must be an integer in [1, 60000]"),
    "data-dir-missing": (["--data-dir", "missing-folder"], "missing-folder"),
    "optimizer-unknown": (["--optimizer", "adamz"], "unknown optimizer 'adamz'"),
    "lrs-reversed": (["--start-lr", "1", "--end-lr", "0.1"], "start_lr must be below end_lr"),
    "start-lr-0": (["--start-lr", "0"], "must be a finite number > 0, but got '0'"),
    "smooth-1": (["--smooth", "1"], "smooth must be in [0, 1)"),
    "diverge-factor-1": (["--diverge-factor", "1"], "diverge_factor must be > 1"),
    "seed-negative": (["--seed", "-1"], "--seed: must be an integer in [0,"),
    "precision-unknown": (["--precision", "fp64"], "invalid choice: 'fp64'"),
    "study-of-another-kind": (["--study-name", "s", "--storage", STUDY_DB],
                              "is not a range-test study"),
}

REPORT = {
    "port": (["--study-name", "s", "--storage", BAD_PORT], "is not a database URL"),
    "name-300": (["--study-name", LONG], "at most 200 characters"),
    "name-5000-postgres": (["--study-name", HUGE, "--storage", PG], "at most 200 characters"),
    "name-empty": (["--study-name", ""], "study name '' is empty"),
    "name-newline": (["--study-name", "a\nb", "--storage", STUDY_DB], "'\\n'"),
    "second-name-empty": (["--study-name", "s", "--study-name", ""], "study name '' is empty"),
    "storage-empty": (["--study-name", "s", "--storage", ""], "--storage '' is empty"),
    "storage-not-url": (["--study-name", "s", "--storage", "not a url"], "not a database URL"),
    "range-test-empty": (["--study-name", "s", "--range-test", ""], "--range-test '' is empty"),
    "out-file": (["--study-name", "s", "--out", "file.txt"], "is a file, not a folder"),
    "out-under-file": (["--study-name", "s", "--out", "file.txt/r"], "is a file, not a folder"),
    "out-unwritable": (["--study-name", "s", "--out", "/proc/report"], "cannot write in /proc"),
    "no-study-name": ([], "the following arguments are required: --study-name"),
    "option-misspelt": (["--study-name", "s", "--output", "r"], "unrecognized arguments"),
    "unknown-study": (["--study-name", "nope", "--storage", STUDY_DB], "no study 'nope'"),
    "no-database": (["--study-name", "nope"], "does not exist"),
    "study-of-another-tool": (["--study-name", "foreign", "--storage", STUDY_DB],
                              "was not made by `python -m study.run`"),
}


def _argv(command: str, given: list[str] | str) -> list[str]:
    if command == "run":
        return [*QUICK_RUN, *given]
    if command == "space":
        return ["--space", "space.toml", *QUICK_RUN]
    if command == "lr_range":
        return [*QUICK_RANGE, *given]
    return list(given)


MAINS = {"run": run_main, "space": run_main, "confirm": confirm_main,
         "lr_range": lr_range_main, "report": report_main}
TABLES = {"run": RUN, "space": SPACE, "confirm": CONFIRM, "lr_range": LR_RANGE,
          "report": REPORT}
CASES = [pytest.param(command, given, message, id=f"{command}:{name}")
         for command, table in TABLES.items() for name, (given, message) in table.items()]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> Path:
    """The study database of :data:`STUDY_DB`, made once and copied into each case's folder."""
    path = tmp_path_factory.mktemp("template") / "s.db"
    url = f"sqlite:///{path}"
    optuna_study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    for key, value in {"epochs": 3, "batch_size": 64, "settings_complete": True}.items():
        optuna_study.set_user_attr(key, value)
    for optimizer, lr, accuracy in (("sgd", 0.1, 0.97), ("sgd", 0.01, 0.96),
                                    ("adam", 1e-3, 0.975), ("adam", 1e-2, 0.95)):
        add_trial(optuna_study, optimizer, lr, accuracy)
    foreign = optuna.create_study(storage=url, study_name="foreign")
    foreign.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=2)
    return path


def _trial_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT s.study_name, COUNT(t.trial_id) FROM studies s LEFT JOIN "
                            "trials t ON t.study_id = s.study_id GROUP BY s.study_name")
        return dict(rows.fetchall())


def _listing(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``, each file with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("command", "given", "message"), CASES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
        command, given, message, study_db, in_tmp, capsys):
    (in_tmp / "studies").mkdir()
    (in_tmp / "studies" / "s.db").write_bytes(study_db.read_bytes())
    (in_tmp / "file.txt").write_text("a file, not a folder or a database")
    (in_tmp / "folder").mkdir()
    if command == "space":
        (in_tmp / "space.toml").write_text(given)
    counts, before = _trial_counts(in_tmp / "studies" / "s.db"), _listing(in_tmp)
    code = MAINS[command](_argv(command, given))
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (2, 1), err
    assert "Traceback" not in err
    assert _trial_counts(in_tmp / "studies" / "s.db") == counts
    assert _listing(in_tmp) == before
    assert message in err
    assert not Path("/proc/ck").exists() and not Path("/proc/report").exists()


def test_the_table_is_as_large_as_the_docs_say():
    text = (Path(__file__).resolve().parent.parent / "docs" / "reliability.md").read_text()
    stated = re.search(r"gives (\d+) bad inputs", " ".join(text.split()))
    assert stated is not None and int(stated.group(1)) == len(CASES) >= 60
    assert len({(command, str(given)) for command, given, _ in (c.values for c in CASES)}) == len(
        CASES)  # each a distinct input
