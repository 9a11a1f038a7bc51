"""The report CLI, the notebook (executed with nbclient) and Optuna's own tools on our
database."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd
import pytest
from conftest import (
    add_seeded_grid,
    add_trial,
    count_images,
    execute_notebook,
    run_small_study,
)

from analysis.report import main as report_main
from study.summary import summarize

REPO = Path(__file__).resolve().parent.parent
PLOTS = (
    "lr_sensitivity",
    "lr_sensitivity_by_schedule",
    "learning_curves",
    "lr_schedules",
    "lr_weight_decay",
    "lr_momentum",
    "best_so_far",
)
TABLES = (
    "lr_sensitivity",
    "best_per_optimizer",
    "best_per_optimizer_schedule",
    "ci_separation",
    "importance",
    "outcomes",
    "trials",
    "curves",
)


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'r.db'}"
    return run_small_study(url, "r", 8, "--pruner", "none")


@pytest.mark.slow
def test_report_writes_the_page_its_plots_and_tables(study_db, tmp_path, capsys):
    out = tmp_path / "rep"
    assert report_main(["--storage", study_db, "--study-name", "r", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out / 'index.html'}" in captured.out
    for name in PLOTS:
        assert (out / f"{name}.png").stat().st_size > 1000, name
        assert f"{name}.png" in captured.err  # a progress line per plot
    for name in TABLES:
        assert (out / f"{name}.csv").is_file(), name
    page = (out / "index.html").read_text()
    assert all(f'src="{name}.png"' in page for name in PLOTS)
    assert "<b>test</b> set" in page  # the evaluation set is stated
    assert "Trials per optimizer" in page
    assert "Do the differences exceed seed noise?" in page
    # 8 complete trials: too few for PED-ANOVA, said instead of a plot of noise.
    assert not (out / "importance.png").exists()
    assert "Not computed: too few complete trials" in page
    # TPE chose the trials: the budget tables that assume independent draws are left out,
    # their note said once.
    assert page.count("Not independent draws") == 1
    assert "tunability and trials-to-target tables are left out" in page
    plt.close("all")


@pytest.mark.slow
def test_report_of_two_studies_compares_them(study_db, tmp_path, capsys):
    run_small_study(study_db, "r2", 2)
    out = tmp_path / "two"
    argv = ["--storage", study_db, "--study-name", "r", "--study-name", "r2", "--out", str(out)]
    assert report_main(argv) == 0
    assert (out / "lr_sensitivity_by_study.png").is_file()
    assert set(pd.read_csv(out / "trials.csv")["study"]) == {"r", "r2"}
    plt.close("all")


def test_report_on_an_empty_study_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    optuna.create_study(storage=url, study_name="empty", direction="maximize")
    assert (
        report_main(["--storage", url, "--study-name", "empty", "--out", str(tmp_path / "o")]) == 1
    )
    err = capsys.readouterr().err
    assert "has no trials yet" in err and "Traceback" not in err


def test_report_on_a_study_without_complete_trials_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="d", direction="maximize")
    add_trial(optuna_study, "sgd", 5.0, None, diverged=True)
    assert report_main(["--storage", url, "--study-name", "d", "--out", str(tmp_path / "o")]) == 1
    assert "no complete, non-diverged trial yet" in capsys.readouterr().err


@pytest.mark.slow
def test_report_on_an_unknown_study_lists_the_studies(study_db, tmp_path, capsys):
    assert report_main(["--storage", study_db, "--study-name", "x", "--out", str(tmp_path)]) == 2
    assert "no study 'x' in this storage; its studies: 'r'" in capsys.readouterr().err


class _Tables(HTMLParser):
    """The text of every table cell of a page: tables -> rows -> cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(page: str, *first: str) -> list[list[list[str]]]:
    """The page's tables whose header row begins with the column names ``first``."""
    parser = _Tables()
    parser.feed(page)
    return [t for t in parser.tables if t[0][: len(first)] == list(first)]


@pytest.fixture
def mixed(tmp_path):
    """SGD: 5 complete runs and 1 diverged (enough for an interval); Adam: 2 complete and 1
    pruned (too few)."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    optuna_study = optuna.create_study(storage=url, study_name="m", direction="maximize")
    for i, lr in enumerate((1e-3, 3e-3, 1e-2, 3e-2, 1e-1)):
        add_trial(optuna_study, "sgd", lr, 0.95 + 0.005 * i)
    add_trial(optuna_study, "sgd", 3.0, None, diverged=True)
    add_trial(optuna_study, "adam", 1e-4, 0.96)
    add_trial(optuna_study, "adam", 1e-3, 0.97)
    add_trial(optuna_study, "adam", 1e-5, 0.80, state="pruned")
    return url


def test_report_counts_trials_by_outcome_as_the_summary_does(mixed, tmp_path):
    out = tmp_path / "rep"
    assert report_main(["--storage", mixed, "--study-name", "m", "--out", str(out)]) == 0
    (table,) = _tables((out / "index.html").read_text(), "optimizer", "complete")
    header, *rows = table
    assert header == ["optimizer", "complete", "pruned", "diverged", "failed", "running", "total"]
    assert rows[0][0] == "adam"  # one header row: no orphan row of an index name
    by_name = {row[0]: dict(zip(header[1:], map(int, row[1:]), strict=True)) for row in rows}
    assert by_name["sgd"] == {
        "complete": 5,
        "pruned": 0,
        "diverged": 1,
        "failed": 0,
        "running": 0,
        "total": 6,
    }
    # The totals are the command-line summary's counts.
    summary = summarize(mixed, "m", target=9, shown_url=mixed).splitlines()[2]
    counts = {k: int(v) for k, v in (part.split() for part in summary.strip().split(", "))}
    assert counts == {k: v for k, v in by_name["all"].items() if k != "total"}
    assert counts["complete"] == 7 and counts["diverged"] == 1
    plt.close("all")


def test_report_sensitivity_table_fits_the_page_and_says_what_is_separated(mixed, tmp_path):
    out = tmp_path / "rep"
    assert report_main(["--storage", mixed, "--study-name", "m", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    ((header, *rows),) = _tables(page, "optimizer", "runs")
    assert len(header) <= 12  # the counts are in the trials table, intervals inline
    cells = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    # One run per learning rate: no interval, and the table says why.
    assert cells["sgd"]["intervals"].startswith("accuracy: none, width: none (1 seed per")
    assert " to " not in cells["sgd"]["best accuracy"]
    assert cells["sgd"]["sensitivity (range-averaged)"].endswith("over 0.001 to 3")
    assert page.count('<div class="scroll"><table') == page.count("<table")
    assert "lr_sensitivity.csv" in page
    # The whole table is still in the CSV.
    assert {"note", "n_seeds", "interval_method", "good_lr_width_at_edge", "n_diverged"} <= set(
        pd.read_csv(out / "lr_sensitivity.csv").columns
    )
    separations = _tables(page, "a", "b", "difference")
    assert len(separations) == 2  # best accuracy, good lr width
    for header, *rows in separations:
        (row,) = rows
        assert dict(zip(header, row, strict=True))["separated"].startswith("cannot tell: ")
    plt.close("all")


def test_report_on_a_study_the_toolkit_did_not_make_names_it_and_exits_2(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    foreign = optuna.create_study(storage=url, study_name="foreign")
    foreign.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=2)
    out = tmp_path / "o"
    assert report_main(["--storage", url, "--study-name", "foreign", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "study 'foreign' was not made by `python -m study.run`" in err
    assert "its parameters: x" in err
    assert not out.exists()


@pytest.mark.slow
def test_notebook_runs_against_a_study(study_db, monkeypatch):
    monkeypatch.setenv("STUDY_STORAGE", study_db)
    monkeypatch.setenv("STUDY_NAME", "r")
    outputs = execute_notebook(REPO / "notebooks" / "lr_sensitivity.ipynb")
    assert count_images(outputs) >= 6
    assert any("8 trials" in o.get("text", "") for o in outputs)


@pytest.mark.slow
def test_comparison_notebook_runs_against_two_studies(study_db, monkeypatch):
    if "r2" not in optuna.study.get_all_study_names(study_db):
        run_small_study(study_db, "r2", 2)
    monkeypatch.setenv("STUDY_STORAGE", study_db)
    monkeypatch.setenv("STUDY_NAMES", "r,r2")
    outputs = execute_notebook(REPO / "notebooks" / "compare_studies.ipynb")
    assert count_images(outputs) >= 2
    tables = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert any("r2" in t for t in tables)


@pytest.mark.slow
def test_optuna_cli_reads_our_database(study_db):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "optuna"),
            "trials",
            "--study-name",
            "r",
            "--storage",
            study_db,
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"number"') == 8
    assert '"eval_accuracy"' in result.stdout  # our user attributes come along


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Some regimes for parameter")
def test_optuna_visualization_reads_our_database(study_db):
    optuna_study = optuna.load_study(study_name="r", storage=study_db)
    from optuna.visualization.matplotlib import plot_intermediate_values, plot_param_importances

    ax = plot_intermediate_values(optuna_study)
    assert len(ax.get_lines()) == 8  # one curve per trial, from trial.report()
    ax = plot_param_importances(optuna_study)
    assert len(ax.patches) > 0
    plt.close("all")


def test_report_of_a_seeded_grid_with_a_confirmation_says_what_exceeds_the_noise(tmp_path, capsys):
    """A grid with three seeds per point (SGD flat, Adam peaked) and a confirmation study:
    the report names the least sensitive optimizer, the seed band plot and the verdicts."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    grid = optuna.create_study(storage=url, study_name="g", direction="maximize")
    add_seeded_grid(grid)
    add_trial(grid, "adam", 1e-2, 0.3, state="pruned")
    confirm = optuna.create_study(storage=url, study_name="g.confirm", direction="maximize")
    for value in (0.981, 0.983, 0.982, 0.984):
        add_trial(confirm, "sgd", 10**-3.25, value, source_trial=2)
    for value in (0.970, 0.972, 0.969, 0.971):
        add_trial(confirm, "adam", 10**-3.25, value, source_trial=7)
    out = tmp_path / "rep"
    assert report_main(["--storage", url, "--study-name", "g", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "sgd is the least sensitive to its learning rate" in page
    assert "sgd at least 2.00 decades" in page and "3 seeds per lr, no interval" in page
    assert "mean of 3 seeds; 95 % t-interval" in page
    assert 'src="lr_seeds.png"' in page and (out / "lr_seeds.png").stat().st_size > 1000
    assert "1 pruned run: pruned runs at the accuracy they were stopped at" in page
    assert "Confirmation over fresh seeds" in page
    assert "sgd leads adam by +0.0120" in page and "exceeds seed noise" in page
    found = (out / "findings.txt").read_text()
    assert found.startswith("- Over fresh seeds (python -m study.confirm)")  # leads
    assert (out / "confirmation.csv").is_file() and (out / "seed_noise.csv").is_file()
    plt.close("all")


def test_one_report_compares_studies_from_different_files(tmp_path, monkeypatch):
    """Each study in its own default file (what `study.run --study-name` writes), then the
    same with one --storage per name; a mismatched count is one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    for name, level in (("default", 0.98), ("my-space", 0.97)):
        url = f"sqlite:///studies/{name}.db"
        optuna_study = optuna.create_study(storage=url, study_name=name, direction="maximize")
        for lr in (1e-3, 1e-2, 1e-1):
            add_trial(optuna_study, "sgd", lr, level)
            add_trial(optuna_study, "adam", lr / 10, level - 0.01)
    out = tmp_path / "both"
    assert report_main(["--study-name", "default", "--study-name", "my-space",
                        "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "trials.csv")["study"]) == {"default", "my-space"}
    page = (out / "index.html").read_text()
    assert "studies/default.db" in page and "studies/my-space.db" in page
    argv = ["--study-name", "default", "--study-name", "my-space",
            "--storage", "sqlite:///studies/default.db",
            "--storage", "sqlite:///studies/my-space.db", "--out", str(tmp_path / "again")]
    assert report_main(argv) == 0
    assert report_main([*argv[:-4], "--storage", "sqlite:///studies/default.db",
                        "--out", str(tmp_path / "one")]) == 2  # my-space is not in it
    plt.close("all")
