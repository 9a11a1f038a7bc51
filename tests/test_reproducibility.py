"""One worker and a seed reproduce a study: the same trials, values and states."""

from __future__ import annotations

import optuna
from processes import TINY

from study.run import main as run_main


def _trials(url: str, name: str) -> list[tuple]:
    optuna_study = optuna.load_study(study_name=name, storage=url)
    return [(t.number, t.state.name, t.value, sorted(t.params.items()))
            for t in optuna_study.get_trials(deepcopy=False)]


def test_one_worker_and_a_seed_reproduce_a_study_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = []
    for k in range(2):
        url = f"sqlite:///{tmp_path / f'r{k}.db'}"
        assert run_main([*TINY, "--epochs", "2", "--trials", "6", "--seed", "7",
                         "--study-name", "r", "--storage", url]) == 0
        runs.append(_trials(url, "r"))
    assert len(runs[0]) == 6
    assert runs[0] == runs[1]


def test_a_grid_with_fewer_than_three_seeds_is_warned_about(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'g.db'}"
    assert run_main([*TINY, "--space", "lr-grid", "--lr-grid", "1e-3,1e-2,1", "--repeats", "2",
                     "--trials", "1", "--study-name", "g", "--storage", url]) == 0
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("--repeats 2: 2 seeds per learning rate give the grid no "
                              "intervals")
    assert "--repeats 5" in warning
