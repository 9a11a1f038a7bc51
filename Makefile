# One command each: `make run` (the 50-trial study), `make test` (the test suite).
# Both create .venv with pip on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TRIALS ?= 50
ARGS ?=

.PHONY: install run test lint bench clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m study.run --trials $(TRIALS) $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) bench/epoch_speed.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
