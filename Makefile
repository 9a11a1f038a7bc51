# One command each: `make run` (the 50-trial study), `make report` (its HTML report),
# `make dashboard` (optuna-dashboard on it), `make test` (the test suite).
# All create .venv with pip on first use. STUDY names the study for report and dashboard.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TRIALS ?= 50
ARGS ?=
STUDY ?= default

.PHONY: install run report dashboard test lint bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m study.run --trials $(TRIALS) $(ARGS)

report: install
	$(PY) -m analysis.report --study-name '$(STUDY)' $(ARGS)

# optuna-dashboard is an extra (`pip install -e '.[dashboard]'`), installed on first use.
dashboard: install
	@test -f 'studies/$(STUDY).db' || { echo "studies/$(STUDY).db does not exist: run the study first (make run)"; exit 2; }
	$(PY) -c "import optuna_dashboard" 2>/dev/null || $(PY) -m pip install -e '.[dashboard]'
	$(VENV)/bin/optuna-dashboard 'sqlite:///studies/$(STUDY).db' $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) -m bench.epoch_speed $(ARGS)

clean-venv:
	rm -rf $(VENV)
