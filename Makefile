# One command to set up and run the main job (`make up`), one to set up and run the tests
# (`make test`). Both create .venv from pyproject.toml on first use and start the local
# services the project needs (see scripts/services.sh).

PYTHON ?= python3.11
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
# This machine kind keeps a CPU build of torch 2.13.0 here; pip would otherwise fetch CUDA.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install services up test lint clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet $(FIND_LINKS) -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

services:
	bash scripts/services.sh

up: install
	$(VENV)/bin/ddso up $(ARGS)

test: install services
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check ddso pipelines rl_env serve_deployments benchmarks tests

clean:
	rm -rf $(VENV) .ddso .pytest_cache
