# Two commands on a fresh machine with Python 3.11: `make demo` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py | sha256sum | cut -c1-12)

.PHONY: install demo test export bench docs lab labextension clean-example

# the stamp's name is the hash of settings.ini and setup.py: a change makes a new name (mtimes play no part, so a
# fresh clone using an installed environment, as the docs workflow under act does, finds it current)
$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# bytecode compiled afterwards on every core (pip compiles one file at a time: ~40 s of an ~85 s install on 2 cores),
	@# except the packages' own test suites, which nothing imports (3,030 of 15,966 files: 26 s -> 20 s here)
	$(BIN)/python -m pip install -q --no-compile -e ".[dev]"
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/' $(VENV)/lib
	@# An editable install skips setup.py's data_files: put the JupyterLab extension where Jupyter looks, as `pip install .` does
	mkdir -p $(VENV)/share/jupyter/labextensions $(VENV)/etc/jupyter/jupyter_server_config.d
	ln -sfn $(CURDIR)/mlops_nb/labextension $(VENV)/share/jupyter/labextensions/mlops-nb-lab
	cp jupyter-config/jupyter_server_config.d/mlops_nb.json $(VENV)/etc/jupyter/jupyter_server_config.d/
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

# The documentation site in _docs/: every notebook a page (executed in the build), tutorials, API reference.
docs: install
	$(BIN)/python .ci/docs.py $(if $(DOCS_OUT),--out $(DOCS_OUT))

# JupyterLab on the weather example, with the mlops_nb panel (left sidebar) and the "Run as pipeline step" button.
lab: install
	$(BIN)/jupyter lab --ServerApp.root_dir=examples/weather $(if $(filter 0,$(shell id -u)),--allow-root)

# After editing labextension/ (TypeScript): rebuild mlops_nb/labextension/ (needs node; CI checks it is up to date).
labextension: install
	$(BIN)/python .ci/labextension.py build
