# Two commands on a fresh machine with Python 3.11: `make demo` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py | sha256sum | cut -c1-12)

.PHONY: install demo test export bench clean-example

$(STAMP): settings.ini setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# The example pipeline end to end on the embedded default (SQLite MLflow store inside the example folder).
demo: install
	$(BIN)/mlops-nb -C examples/weather validate
	$(BIN)/mlops-nb -C examples/weather run --profile $(or $(PROFILE),pr)
	$(BIN)/mlops-nb -C examples/weather status
	$(BIN)/mlops-nb -C examples/weather report

# Everything CI checks: export in sync, clean notebooks, README, lint, notebook tests, pytest.
test: install
	bash .ci/checks

# After editing notebooks: regenerate the package and the README, and strip notebook metadata.
export: install
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(BIN)/python .ci/readme.py

bench: install
	$(BIN)/python -m bench
