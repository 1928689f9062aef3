"""Published versions in git without a server: a bare repository stands in for GitHub; real git, real MLflow stores.
(The weather release loop under act is in test_gitops_act.py.)"""
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
from conftest import clean_env, clone, git, mlops, register_versions, tiny_hub
from mlflow.tracking import MlflowClient


@pytest.fixture
def hub(tmp_path):
    "A tiny project pushed to a bare hub: one gate, `models.yaml` managing model `m`."
    return tiny_hub(tmp_path, '  f1: ">= champion - 0.01"\n')


def store(root):
    uri = f"sqlite:///{root / 'mlruns.db'}"
    return MlflowClient(uri, uri)


def versions(root) -> dict[int, str]:
    "Local version -> the tag it is published as ('' for a local candidate)."
    return {int(v.version): v.tags.get('mlops_nb.published', '')
            for v in store(root).search_model_versions("name = 'm'")} if (root / 'mlruns.db').exists() else {}


def tags(hub) -> list[str]: return git(hub, 'tag', '--list').split()


def merge(root, message):
    "Commit and push to main: the pull request merged."
    git(root, 'commit', '-qam', message)
    git(root, 'push', '-q', 'origin', 'main')


def one_line_error(r, text):
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and text in r.stderr, r.stderr


def test_numbers_continue_across_fresh_stores_and_pull_is_idempotent(hub, tmp_path):
    a = clone(hub, tmp_path / 'job1')
    register_versions(a, 'm', [{'f1': 0.5}])
    r = mlops(a, 'publish')
    assert r.returncode == 0 and 'published m@v1 to origin' in r.stdout, r.stderr
    b = clone(hub, tmp_path / 'job2')                      # the next job: an empty store again
    assert mlops(b, 'pull').returncode == 0 and versions(b) == {1: 'm@v1'}
    register_versions(b, 'm', [{'f1': 0.6}])               # registered after the pulled version: local number 2
    assert 'published m@v2' in mlops(b, 'publish').stdout
    assert 'nothing to publish' in mlops(b, 'publish').stdout
    assert tags(hub) == ['m@v1', 'm@v2']
    c = clone(hub, tmp_path / 'reader')
    r = mlops(c, 'pull')
    assert r.returncode == 0 and 'pulled 2 version(s): m@v1, m@v2' in r.stdout, r.stderr
    assert versions(c) == {1: 'm@v1', 2: 'm@v2'}
    assert 'local registry up to date with git' in mlops(c, 'pull').stdout   # idempotent
    mv = store(c).get_model_version('m', '2')
    assert mv.tags['metric.f1'] == '0.6' and mv.tags['mlops_nb.published'] == 'm@v2'
    record = json.loads(git(c, 'tag', '--list', '--format=%(contents)', 'm@v2').split('\n\n', 1)[1])
    assert record['metrics'] == {'f1': 0.6} and record['version'] == 2


def test_a_local_candidate_is_renumbered_after_newer_published_versions(hub, tmp_path):
    a, b = clone(hub, tmp_path / 'a'), clone(hub, tmp_path / 'b')
    register_versions(a, 'm', [{'f1': 0.5}])
    register_versions(b, 'm', [{'f1': 0.7}])               # b's candidate is its local v1 too
    assert mlops(a, 'publish').returncode == 0              # a takes m@v1
    r = mlops(b, 'publish')                                 # b pulls m@v1 first: its candidate becomes v2
    assert r.returncode == 0 and 'local versions renumbered after the published ones: v1 -> v2' in r.stdout, r.stderr
    assert 'published m@v2' in r.stdout and versions(b) == {1: 'm@v1', 2: 'm@v2'}
    assert store(b).get_model_version('m', '2').tags['metric.f1'] == '0.7'


BARRIER = """#!/bin/sh
# Hold each of the first two pushes until both have arrived: they race for the same tag for real.
mkdir -p "{d}" && touch "{d}/$$"
n=0; while [ "$(ls "{d}" | wc -l)" -lt 2 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
cat >/dev/null
"""


def test_two_clones_publishing_at_the_same_moment_get_two_versions(hub, tmp_path):
    (hub / 'hooks' / 'pre-receive').write_text(BARRIER.format(d=tmp_path / 'barrier'))
    (hub / 'hooks' / 'pre-receive').chmod(0o755)
    clones = [clone(hub, tmp_path / f'job{i}') for i in (1, 2)]
    for i, c in enumerate(clones): register_versions(c, 'm', [{'f1': 0.5 + i / 10}])
    results = [None, None]
    def go(i): results[i] = mlops(clones[i], 'publish')
    threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
    for t in threads: t.start()
    for t in threads: t.join(120)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(list((tmp_path / 'barrier').iterdir())) >= 2           # both pushes were in flight together
    loser = next(r for r in results if 'renumbering' in r.stdout)     # one lost the race for m@v1 ...
    assert 'published m@v2' in loser.stdout                           # ... and published the next number
    assert tags(hub) == ['m@v1', 'm@v2']
    f1 = {t: json.loads(git(hub, 'tag', '--list', '--format=%(contents)', t).split('\n\n', 1)[1])['metrics']['f1']
          for t in ('m@v1', 'm@v2')}
    assert sorted(f1.values()) == [0.5, 0.6]                          # two different models, nothing overwritten
    for i, c in enumerate(clones):                                    # each clone's own model carries its own tag
        mine = [v for v in store(c).search_model_versions("name = 'm'") if float(v.tags['metric.f1']) == 0.5 + i / 10]
        assert len(mine) == 1 and f1[mine[0].tags['mlops_nb.published']] == 0.5 + i / 10


def _forge(hub, tmp_path, name, edit):
    "Push a tag `name` made from m@v1's bundle and record, changed by `edit(bundle_dir, record) -> message`."
    w = clone(hub, tmp_path / f'forge-{name}')
    git(w, 'archive', '--format=tar', '-o', str(tmp_path / 'b.tar'), 'm@v1')
    d = tmp_path / f'bundle-{name}'
    d.mkdir()
    subprocess.run(['tar', '-xf', str(tmp_path / 'b.tar'), '-C', str(d)], check=True)
    record = json.loads(git(w, 'tag', '--list', '--format=%(contents)', 'm@v1').split('\n\n', 1)[1])
    message = edit(d, record)
    env = {**os.environ, 'GIT_INDEX_FILE': str(tmp_path / f'index-{name}'), 'GIT_DIR': str(w / '.git')}
    subprocess.run(['git', f'--work-tree={d}', 'add', '-A', '-f', '.'], cwd=d, check=True, env=env)
    tree = subprocess.run(['git', 'write-tree'], cwd=d, check=True, capture_output=True, text=True, env=env).stdout.strip()
    commit = git(w, 'commit-tree', tree, '-m', 'forged').strip()
    git(w, 'tag', '-a', '-m', message, name, commit)
    git(w, 'push', '-q', 'origin', name)


def _record_message(record, **changes):
    record = {**record, **changes}
    return f"m@v{record['version']}: forged\n\n{json.dumps(record)}"


@pytest.mark.parametrize('case, error', [
    ('hash', 'm@v2: bundle file metrics.json fails its hash'),
    ('missing', 'm@v2: bundle file model.onnx is missing'),
    ('message', 'tag m@v2: malformed message, not an mlops_nb version record'),
])
def test_a_bad_published_tag_is_one_line_and_is_not_imported(hub, tmp_path, case, error):
    a = clone(hub, tmp_path / 'a')
    register_versions(a, 'm', [{'f1': 0.5}])
    assert mlops(a, 'publish').returncode == 0
    def edit(d, record):
        if case == 'hash': (d / 'metrics.json').write_text('{"f1": 0.99}\n')
        if case == 'missing': record['files']['model.onnx'] = '0' * 64
        if case == 'message': return 'release 2: better model'
        return _record_message(record, version=2)
    _forge(hub, tmp_path, 'm@v2', edit)
    fresh = clone(hub, tmp_path / 'fresh')
    one_line_error(mlops(fresh, 'pull'), error)
    assert versions(fresh) == {1: 'm@v1'}                             # the good m@v1 only: the rest of the pull proceeds
    assert not (fresh / '.mlops_nb' / 'published' / 'm@v2').exists()


def test_models_yaml_naming_an_unpublished_version_changes_nothing(hub, tmp_path):
    a = clone(hub, tmp_path / 'a')
    register_versions(a, 'm', [{'f1': 0.5}])
    assert mlops(a, 'publish').returncode == 0
    register_versions(a, 'm', [{'f1': 0.6}])                          # local v2: registered, not published
    (a / 'models.yaml').write_text('models:\n  m: {champion: 2}\n')
    merge(a, 'champion: m v2, which was never published')
    log_before = git(hub, 'log', '--all', '--oneline')
    one_line_error(mlops(a, 'reconcile'), 'models.yaml: m.champion -> version 2: m@v2 is not published (published: m@v1)')
    one_line_error(mlops(a, 'promote', 'm', '2'), 'm version 2 is a local candidate, not published')
    assert git(hub, 'log', '--all', '--oneline') == log_before           # no registry log entry, no tag
    assert 'champion' not in store(a).get_registered_model('m').aliases


def test_a_push_refused_by_the_remote_leaves_nothing_behind(hub, tmp_path):
    (hub / 'hooks' / 'pre-receive').write_text('#!/bin/sh\necho "permission denied: tess has read access only" >&2\nexit 1\n')
    (hub / 'hooks' / 'pre-receive').chmod(0o755)
    a = clone(hub, tmp_path / 'a')
    register_versions(a, 'm', [{'f1': 0.5}])
    one_line_error(mlops(a, 'publish'), 'push of refs/tags/m@v1 to origin refused: [remote rejected] (pre-receive hook '
                   'declined) (permission denied: tess has read access only); nothing was published')
    assert tags(hub) == [] and git(a, 'tag', '--list') == '' and versions(a) == {1: ''}


def test_reconcile_refuses_a_failing_gate_and_the_log_tells_a_fresh_clone(hub, tmp_path):
    a = clone(hub, tmp_path / 'a')
    register_versions(a, 'm', [{'f1': 0.7}])
    assert mlops(a, 'publish').returncode == 0
    register_versions(a, 'm', [{'f1': 0.5}])
    assert mlops(a, 'publish').returncode == 0
    assert mlops(a, 'promote', 'm', '1').returncode == 0
    merge(a, 'champion: m v1')
    assert mlops(a, 'reconcile').returncode == 0                       # what the release job runs after the merge
    (a / 'models.yaml').write_text('models:\n  m: {champion: 2}\n')  # by hand: promote would refuse it
    merge(a, 'champion: m v2')
    r = mlops(a, 'reconcile')
    assert r.returncode == 1 and 'FAIL  f1 >= champion - 0.01: 0.5 >= 0.69' in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(
        'Error: m@champion: 1 -> 2 refused: failed gate f1 >= champion - 0.01 (0.5 >= 0.69) (recorded in the registry log')
    assert int(store(a).get_model_version_by_alias('m', 'champion').version) == 1
    fresh = clone(hub, tmp_path / 'fresh')
    status = mlops(fresh, 'status').stdout
    assert 'champion=v1' in status and 'm@champion: 1 -> 2' in status   # pulled; models.yaml of main still says 1
    history = mlops(fresh, 'history').stdout.splitlines()
    assert [h.split()[1] for h in history] == ['m@v1:', 'm@v2:', 'm@champion:', 'm@champion:']
    assert 'REFUSED by' in history[-1] and 'failed f1 >= champion - 0.01 (0.5 >= 0.69)' in history[-1]
    r = mlops(a, 'reconcile', '--force', '--reason', 'v1 misbehaves in production')
    assert r.returncode == 0 and 'm@champion: 1 -> 2 forced' in r.stdout, r.stderr
    other = clone(hub, tmp_path / 'other')
    assert mlops(other, 'pull').returncode == 0
    assert int(store(other).get_model_version_by_alias('m', 'champion').version) == 2
    assert 'FORCED by' in mlops(other, 'history').stdout.splitlines()[-1]
    assert 'reason: v1 misbehaves in production' in mlops(other, 'history').stdout


def _f1s(root, model='m') -> dict[int, float]:
    return {int(v.version): float(v.tags['metric.f1']) for v in store(root).search_model_versions(f"name = '{model}'")}


def test_publishing_after_two_local_runs_publishes_the_newest_and_keeps_the_other(hub, tmp_path):
    a = clone(hub, tmp_path / 'a')
    register_versions(a, 'm', [{'f1': 0.5}, {'f1': 0.6}], alias='challenger')   # two runs, nothing published yet
    r = mlops(a, 'publish')
    assert r.returncode == 0 and 'published m@v1' in r.stdout, r.stderr
    assert versions(a) == {1: 'm@v1', 2: ''} and _f1s(a) == {1: 0.6, 2: 0.5}   # the newest as v1, the other a candidate
    assert int(store(a).get_model_version_by_alias('m', 'challenger').version) == 1
    assert tags(hub) == ['m@v1']


KILLER = """
import os, signal, sys
from mlflow.tracking import MlflowClient
calls, at = [0], int(os.environ['KILL_AT'])
def counted(f):
    def call(*a, **kw):
        calls[0] += 1
        if calls[0] == at: os.kill(os.getpid(), signal.SIGKILL)
        return f(*a, **kw)
    return call
for name in ('create_registered_model', 'delete_registered_model', 'rename_registered_model', 'create_model_version',
             'delete_model_version', 'set_registered_model_alias', 'set_registered_model_tag', 'set_model_version_tag'):
    setattr(MlflowClient, name, counted(getattr(MlflowClient, name)))
from mlops_nb.cli import cli
cli()
"""


def test_a_publish_killed_at_any_registry_write_loses_no_version(hub, tmp_path):
    "Killed at its 1st, 2nd, ... write to the local registry: every version is still there, and the next publish works."
    a = clone(hub, tmp_path / 'a')
    register_versions(a, 'm', [{'f1': 0.5}, {'f1': 0.6}], alias='challenger')
    kills, at = 0, 0
    while True:
        at += 1
        job, remote = tmp_path / f'job{at}', tmp_path / f'hub{at}.git'
        shutil.copytree(a, job)
        shutil.copytree(hub, remote)
        git(job, 'remote', 'set-url', 'origin', str(remote))
        r = subprocess.run([sys.executable, '-c', KILLER, '-C', str(job), 'publish'], capture_output=True, text=True,
                           env=clean_env({**os.environ, 'KILL_AT': str(at)}))
        if r.returncode == 0: break                                    # got through without reaching write `at`
        assert r.returncode == -9, r.stderr
        kills += 1
        assert mlops(job, 'status').returncode == 0        # any command first completes (or undoes) a stopped rebuild
        assert sorted(_f1s(job).values()) == [0.5, 0.6], (at, _f1s(job))  # nothing lost, nothing doubled
        pushed = git(remote, 'tag', '--list').split() == ['m@v1']         # stopped after its push: pull finds it
        r = mlops(job, 'pull' if pushed else 'publish')
        assert r.returncode == 0, (at, r.stderr)
        assert sorted(_f1s(job).items()) == [(1, 0.6), (2, 0.5)] and versions(job) == {1: 'm@v1', 2: ''}, at
    assert kills >= 5 and versions(job) == {1: 'm@v1', 2: ''}
