"""The GitHub workflows: linted offline, and run for real with act (host mode, offline) on the weather example."""
import shutil
import subprocess

import nbformat
import pytest
from conftest import BIN, REPO, mlops
from mlflow.tracking import MlflowClient

WORKFLOW_DIRS = [REPO / '.github', REPO / 'examples' / 'weather' / '.github']


def test_workflows_pass_schema_and_zizmor():
    files = [str(f) for d in WORKFLOW_DIRS for f in (d / 'workflows').glob('*.yml')]
    assert len(files) >= 3
    r = subprocess.run([str(BIN / 'check-jsonschema'), '--builtin-schema', 'vendor.github-workflows', *files],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(BIN / 'zizmor'), '--offline', '--min-severity', 'medium', *map(str, WORKFLOW_DIRS)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and 'No findings to report' in r.stdout, r.stdout + r.stderr


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    "A fresh project from `mlops-nb init`, committed to git (act needs a repository)."
    root = tmp_path_factory.mktemp('act') / 'weather'
    assert subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root)], capture_output=True).returncode == 0
    _commit(root, 'init')
    return root


def _commit(root, msg):
    git = ['git', '-c', 'user.name=T', '-c', 'user.email=t@e']
    if not (root / '.git').exists(): subprocess.run([*git, 'init', '-q', '-b', 'main'], cwd=root, check=True)
    subprocess.run([*git, 'add', '-A'], cwd=root, check=True)
    subprocess.run([*git, 'commit', '-qm', msg], cwd=root, check=True)


@pytest.mark.slow
def test_act_pull_request(project, tmp_path):
    out = tmp_path / 'out'
    r = mlops(project, 'ci', 'pull_request', '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    log = (out / 'act.log').read_text()
    assert 'Job succeeded' in log and 'Run Main Pipeline (pr profile)' in log
    assert 'Run Main Upload reports' not in log  # the GitHub-only step is skipped under act
    summary = (out / 'pr' / 'summary.md').read_text()
    assert '| metric | this run |' in summary and '| f1_macro |' in summary and '| accuracy |' in summary
    assert '⚙  Summary - ' in log and '| f1_macro |' in log.split('Summary - ', 1)[1]  # the $GITHUB_STEP_SUMMARY act saw
    assert (out / 'index.html').is_file() and len(list((out / 'runs').glob('*/evaluate.html'))) == 1
    assert f"summary: {out / 'pr' / 'summary.md'}" in r.stdout


@pytest.mark.slow
def test_act_push_registers_a_version(project, tmp_path):
    store = tmp_path / 'store'
    store.mkdir()
    uri = f"sqlite:///{store / 'mlruns.db'}"
    r = mlops(project, 'ci', 'push', '--out', str(tmp_path / 'out'), '-s', f'MLFLOW_TRACKING_URI={uri}')
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / 'out' / 'act.log').read_text()
    assert 'Run Main Full pipeline' in log and 'Run Main Apply models.yaml to the registry' in log
    mv = MlflowClient(uri, uri).get_model_version_by_alias('weather', 'challenger')
    assert int(mv.version) == 1 and mv.tags['mlops_nb.profile'] == 'main'
    assert (store / 'mlartifacts').is_dir()  # artifacts beside the shared store, not in act's copy


@pytest.mark.slow
def test_act_failing_step_fails_the_job_and_names_the_cell(project, tmp_path):
    broken = tmp_path / 'weather'
    shutil.copytree(project, broken)
    nb_file = broken / 'notebooks' / 'train.ipynb'
    nb = nbformat.read(nb_file, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == 'code']
    nb.cells[code[2]].source += '\nraise RuntimeError("training data looks wrong")'
    nbformat.write(nb, nb_file)
    _commit(broken, 'break train')
    out = tmp_path / 'out'
    r = mlops(broken, 'ci', 'pull_request', '--out', str(out))
    assert r.returncode != 0
    assert 'Job failed' in (out / 'act.log').read_text()
    summary = (out / 'pr' / 'summary.md').read_text()
    assert f"step `train` failed** in `notebooks/train.ipynb`, cell {code[2] + 1}: `RuntimeError`" in summary
    assert 'training data looks wrong' in summary
