# pymoby: the whole developer interface. `make` lists the targets.
SHELL := /bin/bash
VENV  := .venv/bin
PYTEST_ARGS ?=
ARGS ?=

.PHONY: help setup run test check unit integration bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install system packages and the .venv (idempotent, quick when done)
	@scripts/setup.sh

run: setup ## set up, then start pymobyd in the foreground (ARGS="--debug -H unix:///tmp/p.sock")
	$(VENV)/pymobyd $(ARGS)

check: setup ## lint, format check, mypy strict, import contracts
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench
	$(VENV)/mypy
	$(VENV)/lint-imports

unit: setup ## unit tests only
	$(VENV)/pytest -q tests/unit $(PYTEST_ARGS)

integration: setup ## integration tests only (root: real pymobyd, docker CLI, docker-py)
	$(VENV)/pytest -q tests/integration $(PYTEST_ARGS)

test: setup check ## set up, then run every check and every test
	$(VENV)/pytest -q tests $(PYTEST_ARGS)

bench: setup ## pymobyd vs a reference engine: make bench REF=unix:///tmp/ref.sock
	$(VENV)/python bench/bench.py $(if $(REF),--ref $(REF)) $(BENCH_ARGS)

clean: ## remove the .venv and caches
	rm -rf .venv .mypy_cache .ruff_cache src/*.egg-info
