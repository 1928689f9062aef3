"""CI refuses a package that differs from what the notebooks export, and a run without the services its tests need."""
import json
import os
import shutil
import subprocess

from conftest import BIN, REPO


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
