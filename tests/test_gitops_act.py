"""The GitOps loop of the weather project with nothing but a git repository: a bare repository stands in for GitHub,
each merge's release workflow runs for real under act in a fresh clone (no tracking secret), and fresh clones pull,
show, serve and audit what the jobs published."""
import json
import re
import subprocess
import time

import pytest
import requests
from conftest import BIN, clean_env, clone, full_profile, git, hub_of, mlops, release_key
from mlflow.tracking import MlflowClient
from services import free_port

# Three merges, each changing the full pipeline's parameters: three different models. The first is deliberately weak
# (one shallow tree on a tenth of the days), so that making it champion later fails a gate.
FAST = {'permutation_repeats': 1, 'bootstrap': 100}
MERGES = [{**FAST, 'sample_frac': 0.1, 'model': 'random_forest', 'n_estimators': 1, 'max_depth': 1},
          {**FAST, 'sample_frac': 1.0, 'n_estimators': 40},
          {**FAST, 'sample_frac': 1.0, 'n_estimators': 30}]


def merge(work, message, models=None, params=None):
    "Change the project on `main` (models.yaml and/or the full profile's parameters) and push: the PR merged."
    if params is not None: full_profile(work, params)
    if models is not None: (work / 'models.yaml').write_text(models)
    git(work, 'commit', '-qam', message)
    git(work, 'push', '-q', 'origin', 'main')


def act(hub, tmp, name, event='push', branch=None, key_env=None):
    """The workflow for `event` under act, in a fresh clone of `hub` (on `branch`), a push with the release key (from
    `key_env`, default `KEY`) as the secret of its publish job; returns (result, output folder, log)."""
    job = clone(hub, tmp / name)
    if branch: git(job, 'checkout', '-q', branch)
    out = tmp / f'{name}-out'
    key = ['-s', 'MLOPS_NB_SIGNING_KEY'] if event == 'push' else []   # a pull request's job never holds it
    r = mlops(job, 'ci', event, '--out', str(out), *key, env=(key_env or KEY) if key else None)
    return r, out, (out / 'act.log').read_text()


KEY = {}  # the environment holding the release key, set by `released`


def record(hub, tag) -> dict:
    return json.loads(git(hub, 'tag', '--list', '--format=%(contents:body)', tag))   # without the signature


def store(root):
    uri = f"sqlite:///{root / 'mlruns.db'}"
    return MlflowClient(uri, uri)


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    "`mlops-nb init` weather on a bare hub, then three merges, each followed by its release job under act."
    tmp = tmp_path_factory.mktemp('gitops')
    work = tmp / 'work'
    assert mlops(tmp, 'init', str(work)).returncode == 0
    KEY.update(release_key(work))                          # main trusts the release key; the publish job holds it
    hub = hub_of(work, tmp / 'hub.git')
    jobs = []
    for i, params in enumerate(MERGES, 1):
        merge(work, f'pipeline change {i}', params=params)
        r, out, log = act(hub, tmp, f'release{i}')
        assert r.returncode == 0 and log.count('Job succeeded') == 2, log[-4000:]
        # The notebooks run in the pipeline job, which has no key; the publish job signs and runs no notebook.
        pipeline, publish = _job_lines(log, 'pipeline'), _job_lines(log, 'publish')
        assert 'Run Main Full pipeline' in pipeline and 'staged weather' in pipeline and 'published weather@v' not in pipeline
        assert 'published weather@v' in publish and 'Run Main Full pipeline' not in publish
        assert KEY['MLOPS_NB_SIGNING_KEY'].splitlines()[1] not in log   # the secret never reaches the log
        jobs.append(out)
    return tmp, hub, work, jobs


def _job_lines(log: str, job: str) -> str:
    "The lines of the release workflow's `job` in act's log (act pads the job names to one width)."
    return '\n'.join(line for line in log.splitlines() if re.match(rf'\[release/{job} *\]', line))


@pytest.mark.slow
def test_three_merges_publish_three_versions_a_fresh_clone_pulls(released, tmp_path):
    tmp, hub, work, jobs = released
    assert git(hub, 'tag', '--list').split() == ['weather@v1', 'weather@v2', 'weather@v3']
    assert git(hub, 'for-each-ref', '--format=%(refname)', 'refs/heads').split() == ['refs/heads/main']  # tags only
    fresh = clone(hub, tmp_path / 'fresh')
    r = mlops(fresh, 'pull')
    assert r.returncode == 0 and 'pulled 3 version(s): weather@v1, weather@v2, weather@v3' in r.stdout, r.stderr
    r = mlops(fresh, 'verify')
    assert r.returncode == 0 and [ln.split('  ')[:2] for ln in r.stdout.splitlines()] == [
        ['weather@v1', 'OK'], ['weather@v2', 'OK'], ['weather@v3', 'OK'], ['registry log', 'OK']], r.stdout
    assert 'signed by release@weather' in r.stdout
    client = store(fresh)
    for n, job in enumerate(jobs, 1):
        produced = job / 'published' / f'weather@v{n}'                  # what job n produced and pushed
        mv = client.get_model_version('weather', str(n))
        assert mv.tags['mlops_nb.published'] == f'weather@v{n}'
        metrics = {k[7:]: float(v) for k, v in mv.tags.items() if k.startswith('metric.')}
        assert metrics == json.loads((produced / 'metrics.json').read_text()) == record(hub, f'weather@v{n}')['metrics']
        run_id, path = mv.tags['mlops_nb.onnx'].removeprefix('runs:/').split('/', 1)
        local_onnx = client.download_artifacts(run_id, path, str(tmp_path / f'onnx{n}'))
        assert open(local_onnx, 'rb').read() == (produced / 'model.onnx').read_bytes()
        assert mv.tags['mlops_nb.profile'] == 'main'
    assert json.loads((jobs[0] / 'published' / 'weather@v1' / 'metrics.json').read_text()) != \
        json.loads((jobs[1] / 'published' / 'weather@v2' / 'metrics.json').read_text())
    # The site the third job built for Pages lists the runs of all three merges (rebuilt from the published bundles).
    index = (jobs[2] / 'index.html').read_text()
    for n in (1, 2, 3):
        run_id = record(hub, f'weather@v{n}')['lineage']['run_id']
        assert run_id in index and (jobs[2] / 'runs' / run_id / 'index.html').is_file()
        assert f'weather@v{n}</code> <span class="badge" title="signed by release@weather">verified</span>' in index
    assert len(list((jobs[2] / 'runs').glob('*/evaluate.html'))) == 3   # each merge's executed notebooks, rendered


@pytest.mark.slow
def test_promote_reconcile_serve_refuse_force_from_fresh_clones(released, tmp_path):
    tmp, hub0, _, _ = released
    hub = tmp_path / 'hub.git'                                            # our own copy: this test moves aliases
    git(tmp_path, 'clone', '-q', '--mirror', str(hub0), str(hub))
    work = clone(hub, tmp_path / 'work')

    # A pull request promotes version 2: `promote` pulls the published versions and checks the gates.
    r = mlops(work, 'promote', 'weather', '2')
    assert r.returncode == 0, r.stderr
    merge(work, 'promote weather v2')
    r, out, log = act(hub, tmp_path, 'release-champion')
    assert r.returncode == 0 and 'weather@champion: (unset) -> 2 applied' in log, log[-4000:]
    assert 'nothing new to publish' in log and git(hub, 'tag', '--list').split()[-1] == 'weather@v3'

    fresh = clone(hub, tmp_path / 'fresh')
    status = mlops(fresh, 'status').stdout
    assert 'champion=v2' in status and 'models.yaml and the registry agree' in status, status
    port = free_port()
    server = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(fresh), 'serve', 'weather', '--alias', 'champion',
                               '--port', str(port)], env=clean_env(), stderr=subprocess.PIPE, text=True)
    try:
        url, deadline = f'http://127.0.0.1:{port}', time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f'{url}/health', timeout=1).ok: break
            except requests.ConnectionError: time.sleep(0.3)
        example = json.loads((fresh / '.mlops_nb' / 'published' / 'weather@v2' / 'model' / 'input_example.json').read_text())
        row = dict(zip(example['columns'], example['data'][0], strict=True))
        answer = requests.post(f'{url}/predict', json=row, timeout=10).json()
        assert answer['version'] == 2 and answer['alias'] == 'champion' and len(answer['predictions']) == 1, answer
    finally:
        server.terminate()
        server.wait(30)

    # A pull request: the job reads the published champion from git and writes nothing shared.
    git(work, 'checkout', '-q', '-b', 'tweak')
    merge_refs = git(hub, 'for-each-ref')
    (work / 'README.md').write_text('a change under review\n')
    git(work, 'add', 'README.md')
    git(work, 'commit', '-qm', 'tweak')
    git(work, 'push', '-q', 'origin', 'tweak')
    r, out, log = act(hub, tmp_path, 'pr', event='pull_request', branch='tweak')
    assert r.returncode == 0, log[-4000:]
    assert 'champion weather v2' in (out / 'pr' / 'summary.md').read_text()
    assert [ln for ln in git(hub, 'for-each-ref').splitlines() if 'tweak' not in ln] == merge_refs.splitlines()
    git(work, 'checkout', '-q', 'main')

    # A pull request makes the weak version 1 champion by hand: the release job refuses it, and says so in git.
    merge(work, 'champion: weather v1', models='models:\n  weather: {champion: 1}\n')
    r, out, log = act(hub, tmp_path, 'release-refused')
    assert r.returncode != 0 and 'Job failed' in log and 'weather@champion: 2 -> 1 refused: failed gate' in log
    other = clone(hub, tmp_path / 'other')
    assert 'champion=v2' in mlops(other, 'status').stdout                 # the registry kept version 2
    refused = mlops(other, 'history').stdout.splitlines()[-1]
    gates = _gates(work)
    failed = [g for g in gates if f'{g} {gates[g]} (' in refused]
    assert 'weather@champion: 2 -> 1 REFUSED by' in refused and failed, refused   # names the gates that failed

    # Forced, with a reason: applied and audited as forced, seen by yet another fresh clone.
    r = mlops(other, 'reconcile', '--force', '--reason', 'v2 misbehaves on new data')
    assert r.returncode == 1 and 'reconcile needs the release key' in r.stderr, r.stderr   # the log is signed
    r = mlops(other, 'reconcile', '--force', '--reason', 'v2 misbehaves on new data', env=KEY)
    assert r.returncode == 0 and 'weather@champion: 2 -> 1 forced' in r.stdout, r.stderr
    last = clone(hub, tmp_path / 'last')
    assert 'champion=v1' in mlops(last, 'status').stdout
    forced = mlops(last, 'history').stdout.splitlines()[-1]
    assert 'weather@champion: 2 -> 1 FORCED by' in forced and 'reason: v2 misbehaves on new data' in forced

    # The release key rotated in a pull request: the new key added, the old one valid until now. The next merge's
    # publish job signs weather@v4 with the new key, and every earlier version keeps verifying.
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(tmp_path / 'release2')], check=True)
    old = (work / '.mlops-nb' / 'allowed_signers').read_text().split(' ', 1)[1]
    time.sleep(1.1)
    until = time.strftime('%Y%m%d%H%M%SZ', time.gmtime())
    time.sleep(1.1)
    (work / '.mlops-nb' / 'allowed_signers').write_text(
        f'release@weather valid-before="{until}" {old}release2@weather {(tmp_path / "release2.pub").read_text()}')
    merge(work, 'rotate the release key; more trees', params={**FAST, 'sample_frac': 1.0, 'n_estimators': 20})
    new_key = {**KEY, 'MLOPS_NB_SIGNING_KEY': (tmp_path / 'release2').read_text()}
    r, out, log = act(hub, tmp_path, 'release-rotated', key_env=new_key)
    assert r.returncode == 0 and 'published weather@v4' in log, log[-4000:]
    verified = mlops(clone(hub, tmp_path / 'auditor'), 'verify')
    assert verified.returncode == 0, verified.stdout
    assert [ln.split(', built')[0] for ln in verified.stdout.splitlines()] == [
        *(f'weather@v{n}  OK  signed by release@weather' for n in (1, 2, 3)), 'weather@v4  OK  signed by release2@weather',
        'registry log  OK'], verified.stdout


def _gates(root) -> dict:
    import yaml
    return yaml.safe_load((root / 'mlops.yaml').read_text())['gates']
