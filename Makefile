# Two commands on a fresh machine with Python 3.11: `make demo` (the main job) and `make test` (what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# every package and version `make install` puts in the environment: pip's resolution of settings.ini (`make lock`)
LOCK := requirements-dev.lock
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py $(LOCK) | sha256sum | cut -c1-12)

.PHONY: install lock demo test export bench docs lab labextension clean-example

# the stamp's name is the hash of settings.ini, setup.py and the lock: a change makes a new name (mtimes play no part, so a
# fresh clone using an installed environment, as the docs workflow under act does, finds it current)
$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# the locked versions, installed by uv: it links them from its cache (pip took 34 s to unpack the same wheels here,
	@# uv 2 s); `uv pip check` fails when the lock no longer satisfies settings.ini (then: make lock)
	$(BIN)/python -m pip install -q $$(grep '^uv==' $(LOCK))
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -r $(LOCK)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/uv pip check -q --python $(BIN)/python
	@# bytecode on every core, except the packages' own test suites, which nothing imports (3,030 of 15,966 files)
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/' $(VENV)/lib
	@# An editable install skips setup.py's data_files: put the JupyterLab extension where Jupyter looks, as `pip install .` does
	mkdir -p $(VENV)/share/jupyter/labextensions $(VENV)/etc/jupyter/jupyter_server_config.d
	ln -sfn $(CURDIR)/mlops_nb/labextension $(VENV)/share/jupyter/labextensions/mlops-nb-lab
	cp jupyter-config/jupyter_server_config.d/mlops_nb.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# After changing the requirements in settings.ini: pip resolves them in a throwaway environment; commit the lock.
lock:
	tmp=$$(mktemp -d) && $(PYTHON) -m venv $$tmp && $$tmp/bin/python -m pip install -q --upgrade pip && \
	$$tmp/bin/python -m pip install -q --no-compile -e ".[dev]" && \
	{ echo "# pip's resolution of settings.ini (requirements, dev_requirements) for Python 3.11 on Linux: \`make lock\`"; \
	  $$tmp/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip=='; } > $(LOCK) && rm -rf $$tmp

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
