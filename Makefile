# The README's commands. `make demo` and `make test` are all a newcomer types.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ONLY ?=
SCALE ?= 1.0
MODULE ?=

.PHONY: install browser demo test mutate ui bench lint format clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(MAKE) --no-print-directory browser
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $(STAMP)

# The browser test drives Debian's Chromium through Debian's chromedriver (never a
# downloaded browser). Installed here when missing and we are root with apt-get; otherwise
# this says what to install and the test says it again (it fails under CI=true).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver for the browser test"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| { apt-get update -q >/dev/null && \
		     DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } \
		|| echo "warning: could not install chromium chromium-driver: the browser test will say so"; \
	else echo "note: tests/e2e/test_ui_browser.py needs: sudo apt-get install chromium chromium-driver"; fi

demo: install
	$(BIN)/clipflow demo

test: install
	$(BIN)/pytest

# Mutation testing of the decision modules with their fast tests (not part of `make test`;
# minutes per module): `make mutate MODULE=gate`. Survivors: tests/mutation/baseline.md.
mutate: install
	$(BIN)/python tests/mutation/run.py $(MODULE)

ui: install
	$(BIN)/clipflow ui

bench: install
	$(BIN)/python -m bench $(if $(ONLY),--only $(ONLY)) --scale $(SCALE)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .clipflow bench/results .pytest_cache .ruff_cache .mutmut
