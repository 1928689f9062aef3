"""CI refuses a package that differs from what the notebooks export."""
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
