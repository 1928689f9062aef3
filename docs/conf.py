"""Sphinx configuration of the documentation site (`make docs`; `.ci/docs.py` assembles the sources).

Why Sphinx with MyST-NB: nbdev renders with Quarto, whose binary cannot be fetched here; jupyter-book 2 (mystmd)
downloads its site template at build time. Sphinx, MyST-NB and Furo come from PyPI alone, build offline, execute
the notebooks (so no page shows stale output), and autodoc gives the API reference from the code itself."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / '_ext'))

project = 'mlops_nb'
author = 'mlops_nb developers'
extensions = ['myst_nb', 'sphinx.ext.autodoc', 'docments_fields']
exclude_patterns = ['_build', '**.ipynb_checkpoints', 'runs', 'reports', '**/.mlops_nb', '_demo']  # _demo: examples' project
html_theme = 'furo'
html_title = 'mlops_nb'
html_static_path = []

# every notebook runs in the build, from its own folder, and a failing cell fails the build
nb_execution_mode = 'force'
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ['colon_fence']
myst_heading_anchors = 3

autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_default_options = {'members': True, 'undoc-members': True}
suppress_warnings = ['myst.header', 'misc.highlighting_failure']
