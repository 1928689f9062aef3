"""CI refuses a package that differs from what the notebooks export, notebooks committed unclean, and a run without the
services its tests need."""
import json
import os
import shutil
import subprocess

import nbformat
from conftest import BIN, REPO, git


def _copy_project(dest):
    for d in ('nbs', 'mlops_nb', '.ci'): shutil.copytree(REPO / d, dest / d)
    shutil.copy(REPO / 'settings.ini', dest)
    return dest


def _check(root):
    return subprocess.run(['bash', '.ci/check-export'], cwd=root, capture_output=True, text=True,
                          env={**os.environ, 'BIN': str(BIN)})


def test_in_sync_passes(tmp_path):
    r = _check(_copy_project(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_notebook_edited_without_export_fails(tmp_path):
    root = _copy_project(tmp_path)
    nb_file = root / 'nbs' / '00_config.ipynb'
    nb = json.loads(nb_file.read_text())
    cell = next(c for c in nb['cells'] if 'def find_root' in ''.join(c['source']))
    cell['source'] = ''.join(cell['source']).replace('"The nearest folder', '"The closest folder')
    nb_file.write_text(json.dumps(nb, indent=1))
    r = _check(root)
    assert r.returncode == 1
    assert 'out of sync with nbs/' in r.stderr and 'Run nbdev_export' in r.stderr


def test_a_missing_service_fails_under_ci_and_skips_elsewhere(tmp_path):
    "The browser and PostgreSQL tests use `require_service`: under CI=true a missing one fails the run, naming it."
    (tmp_path / 'test_needs.py').write_text(
        'from conftest import require_service\n\n'
        'def test_needs_a_browser():\n    require_service(False, "chromium not installed (apt-get install chromium)")\n')
    shutil.copy(REPO / 'tests' / 'conftest.py', tmp_path)
    results = {}
    for ci in ('true', ''):
        results[ci] = subprocess.run([str(BIN / 'python'), '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rfs', str(tmp_path)],
                                     cwd=tmp_path, capture_output=True, text=True, env={**os.environ, 'CI': ci})
    assert results['true'].returncode == 1
    assert '(apt-get install chromium) (CI=true: a missing service fails the run)' in results['true'].stdout
    assert results[''].returncode == 0 and '1 skipped' in results[''].stdout


def test_the_clean_check_cleans_tracked_notebooks_only(tmp_path):
    """After `make demo`, MLflow keeps copies of the executed notebooks (untracked, with their outputs) under the example:
    the clean check leaves them as they are (before: it stripped them, then failed `make test`); a tracked notebook
    with an output still fails it."""
    for d in ('nbs', 'examples', '.ci'): shutil.copytree(REPO / d, tmp_path / d)
    shutil.copy(REPO / 'settings.ini', tmp_path)                # nbdev_clean's settings
    git(tmp_path, 'init', '-q')
    git(tmp_path, 'add', 'nbs/00_config.ipynb', 'examples', '.ci')   # what git tracks here: one notebook of nbs/ suffices
    git(tmp_path, 'commit', '-qm', 'tracked')
    executed = tmp_path / 'examples' / 'weather' / 'mlartifacts' / '1' / 'artifacts' / 'train.ipynb'
    executed.parent.mkdir(parents=True)
    out = nbformat.v4.new_output('execute_result', {'text/plain': '2'}, execution_count=1)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1 + 1', execution_count=1, outputs=[out])]),
                   executed)
    before = executed.read_bytes()
    check = lambda: subprocess.run(['bash', '.ci/check-clean'], cwd=tmp_path, capture_output=True, text=True,
                                   env={**os.environ, 'BIN': str(BIN)})
    r = check()
    assert r.returncode == 0 and 'tracked notebooks are clean' in r.stdout, r.stdout + r.stderr
    assert executed.read_bytes() == before                      # the demo's executed notebook keeps its outputs
    tracked = tmp_path / 'nbs' / '00_config.ipynb'
    nb = nbformat.read(tracked, as_version=4)
    next(c for c in nb.cells if c.cell_type == 'code').execution_count = 7
    nbformat.write(nb, tracked)
    r = check()
    assert r.returncode == 1 and 'notebooks were not clean' in r.stderr
