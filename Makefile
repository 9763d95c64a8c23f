# StayOps: `make up` runs the whole system with a demo org; `make test` runs every test.
# Both install what is missing first (uv, the Python workspace, the Kafka jars).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
UV := .uv/bin/uv
STAYOPS := $(VENV)/bin/stayops
STAMP := $(VENV)/.installed

.PHONY: install up test lint typecheck bench schemas clean

# uv lives in its own small venv: `uv sync` prunes the project venv to the lock file.
$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check "uv>=0.5"

$(STAMP): $(UV) pyproject.toml uv.lock */pyproject.toml
	$(UV) sync --quiet --frozen
	touch $(STAMP)

install: $(STAMP)
	$(STAYOPS) stack install

up: install
	$(STAYOPS) up --demo

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/python benchmarks/messaging.py
	$(VENV)/bin/python benchmarks/pricing.py
	$(VENV)/bin/python benchmarks/saga.py

schemas: install
	$(STAYOPS) schemas export shared-schemas/schemas

clean:
	rm -rf $(VENV) .uv .stayops
