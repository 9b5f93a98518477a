# The README's commands. `make demo` and `make test` are all a newcomer types.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ONLY ?=
SCALE ?= 1.0

.PHONY: install demo test ui bench lint format clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/clipflow demo

test: install
	$(BIN)/pytest

ui: install
	$(BIN)/clipflow ui

bench: install
	$(BIN)/python -m bench $(if $(ONLY),--only $(ONLY)) --scale $(SCALE)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .clipflow bench/results .pytest_cache .ruff_cache
