"""The GitHub workflows: linted offline, and run for real with act (host mode, offline) on the weather example."""
import glob
import os
import shutil
import subprocess
import threading
import time

import nbformat
import pytest
from conftest import BIN, REPO, full_profile, git, hub_of, mlops, release_key
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
    "A fresh project from `mlops-nb init`, committed to git (act needs a repository) and pushed to a bare hub."
    root = tmp_path_factory.mktemp('act') / 'weather'
    assert subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root)], capture_output=True).returncode == 0
    hub_of(root, root.parent / 'hub.git')
    return root


def _commit(root, msg):
    git = ['git', '-c', 'user.name=T', '-c', 'user.email=t@e']
    if not (root / '.git').exists(): subprocess.run([*git, 'init', '-q', '-b', 'main'], cwd=root, check=True)
    subprocess.run([*git, 'add', '-A'], cwd=root, check=True)
    subprocess.run([*git, 'commit', '-qm', msg], cwd=root, check=True)


def test_init_writes_a_pr_workflow_without_secrets_and_a_pinned_mlops_nb(project):
    import mlops_nb
    ci = (project / '.github' / 'workflows' / 'ci.yml').read_text()
    assert 'secrets.' not in ci and 'permissions:\n  contents: read\n' in ci   # the PR job holds no credential
    assert (project / 'requirements.txt').read_text().splitlines()[-1] == f'mlops_nb=={mlops_nb.__version__}'
    assert {'runs/', 'reports/', 'mlruns.db', 'mlartifacts/', '.mlops_nb/'} <= set((project / '.gitignore').read_text().split())


@pytest.mark.slow
def test_act_pull_request(project, tmp_path):
    out = tmp_path / 'out'
    r = mlops(project, 'ci', 'pull_request', '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    log = (out / 'act.log').read_text()
    assert 'Job succeeded' in log and 'Run Main Pipeline (pr profile)' in log
    assert 'Run Main Upload reports' not in log  # the GitHub-only step is skipped under act
    summary = (out / 'pr' / 'summary.md').read_text()
    assert '| metric | this run |' in summary and '| roc_auc |' in summary and '| f1 |' in summary
    assert '⚙  Summary - ' in log and '| roc_auc |' in log.split('Summary - ', 1)[1]  # the $GITHUB_STEP_SUMMARY act saw
    assert (out / 'index.html').is_file() and len(list((out / 'runs').glob('*/evaluate.html'))) == 1
    assert f"summary: {out / 'pr' / 'summary.md'}" in r.stdout


@pytest.mark.slow
def test_act_push_with_a_tracking_server_still_publishes_to_git(project, tmp_path):
    "A team with a shared tracking store (the MLFLOW_TRACKING_URI secret): same commands, and versions still go to git."
    store = tmp_path / 'store'
    store.mkdir()
    uri = f"sqlite:///{store / 'mlruns.db'}"
    work = tmp_path / 'weather'  # the full profile on small parameters (as tests/test_gitops_act.py): where a version
    shutil.copytree(project, work)  # goes is the point here, not a model trained on all the data (46 s -> 35 s here)
    full_profile(work, {'n_estimators': 30, 'permutation_repeats': 1, 'bootstrap': 100})
    key = release_key(work)                                   # main trusts it; the publish job holds it
    hub = hub_of(work, tmp_path / 'hub.git')                  # this test's own hub: main is what the job publishes from
    r = mlops(work, 'ci', 'push', '--out', str(tmp_path / 'out'), '-s', f'MLFLOW_TRACKING_URI={uri}',
              '-s', 'MLOPS_NB_SIGNING_KEY', env=key)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / 'out' / 'act.log').read_text()
    assert 'Run Main Full pipeline' in log and 'Run Main Apply models.yaml' in log
    assert 'Run Main GitHub Release' not in log and 'pages' not in log.split('Job succeeded')[-1]  # GitHub-only: skipped
    mv = MlflowClient(uri, uri).get_model_version_by_alias('weather', 'challenger')
    assert int(mv.version) == 1 and mv.tags['mlops_nb.profile'] == 'main'
    assert mv.tags['mlops_nb.published'] == 'weather@v1' and 'weather@v1' in git(hub, 'tag')
    assert (store / 'mlartifacts').is_dir()  # artifacts beside the shared store, not in act's copy


def test_ci_secrets_never_reach_acts_command_line(project, tmp_path):
    """`mlops-nb ci -s NAME` reads the secret from the environment and hands it to act in a 0600 file: the workflow gets
    it, and no process's command line shows it (before: `act -s NAME=VALUE`)."""
    root = tmp_path / 'weather'
    shutil.copytree(project, root)
    (root / '.github' / 'workflows' / 'secret.yml').write_text("""name: secret
on: pull_request
permissions: {}
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - run: sleep 2; test "$API_TOKEN" = "s3cr3t-value-42" && touch "$MLOPS_NB_REPORTS/got-it"
        env:
          API_TOKEN: ${{ secrets.API_TOKEN }}
""")
    _commit(root, 'a workflow reading a secret')
    seen, done = set(), threading.Event()
    def watch():  # every process's command line while act runs, as `ps` would show them
        while not done.is_set():
            for f in glob.glob('/proc/[0-9]*/cmdline'):
                try: seen.add(open(f, 'rb').read().replace(b'\0', b' ').decode(errors='replace'))
                except OSError: pass
            time.sleep(0.05)
    t = threading.Thread(target=watch)
    t.start()
    try: r = mlops(root, 'ci', 'pull_request', '-W', 'secret.yml', '--out', str(tmp_path / 'out'), '-s', 'API_TOKEN',
                   env={**os.environ, 'API_TOKEN': 's3cr3t-value-42'})
    finally:
        done.set()
        t.join()
    assert r.returncode == 0 and (tmp_path / 'out' / 'got-it').exists(), r.stderr[-2000:]
    assert any('--secret-file' in c for c in seen)                       # the watcher saw act's command line ...
    assert not [c for c in seen if 's3cr3t-value-42' in c]                # ... and never the value


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
