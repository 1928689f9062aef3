"""Signed, verifiable versions: each attack of an ordinary writer of the repository (a second clone pushing to the same
bare hub) is refused in one line, and nothing changes in the victim's registry. Real git, real keys from ssh-keygen."""
import json
import os
import subprocess
import time

import pytest
from conftest import clone, git, mlops, tiny_hub
from mlflow.tracking import MlflowClient

from mlops_nb.gitstore import KEY_ENV


def store(root):
    uri = f"sqlite:///{root / 'mlruns.db'}"
    return MlflowClient(uri, uri)


def versions(root) -> dict[int, str]:
    return {int(v.version): v.tags.get('mlops_nb.published', '')
            for v in store(root).search_model_versions("name = 'm'")} if (root / 'mlruns.db').exists() else {}


def champion(root) -> int | None:
    aliases = store(root).get_registered_model('m').aliases
    return int(aliases['champion']) if 'champion' in aliases else None


def keygen(folder, name):
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', str(folder / name)], check=True)
    return folder / name


def signed(key) -> dict:
    "The environment of a job holding `key` (the key itself, as a CI secret is given)."
    return {**os.environ, KEY_ENV: key.read_text()}


def register(root, f1, commit=None):
    "A tiny model registered as a local candidate, built from `commit` (default: the clone's HEAD), as a pipeline does."
    from conftest import register_versions
    commit = commit or git(root, 'rev-parse', 'HEAD').strip()
    register_versions(root, 'm', [{'f1': f1}], tags={'mlops_nb.git_commit': commit})


def one_line_error(r, *texts):
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and all(t in lines[0] for t in texts), r.stderr


@pytest.fixture
def hub(tmp_path):
    """A tiny project on a bare hub whose main trusts the release key; m@v1 published (signed) and made champion."""
    keys = tmp_path / 'keys'
    keys.mkdir()
    for k in ('release', 'intruder', 'release2'): keygen(keys, k)
    hub = tiny_hub(tmp_path, '  f1: ">= 0.1"\n')
    work = clone(hub, tmp_path / 'maintainer')
    (work / '.mlops-nb').mkdir()
    (work / '.mlops-nb' / 'allowed_signers').write_text(f"release@tiny {(keys / 'release.pub').read_text()}")
    (work / 'mlops.yaml').write_text((work / 'mlops.yaml').read_text() + 'registry: {require_signatures: true}\n')
    git(work, 'add', '-A')
    git(work, 'commit', '-qm', 'trust the release key')
    git(work, 'push', '-q', 'origin', 'main')
    job = clone(hub, tmp_path / 'release-job')
    register(job, 0.6)
    r = mlops(job, 'publish', env=signed(keys / 'release'))
    assert r.returncode == 0 and 'published m@v1' in r.stdout, r.stderr
    (job / 'models.yaml').write_text('models:\n  m: {champion: 1}\n')
    git(job, 'commit', '-qam', 'champion: m v1')
    git(job, 'push', '-q', 'origin', 'main')
    r = mlops(job, 'reconcile', env=signed(keys / 'release'))
    assert r.returncode == 0 and 'm@champion: (unset) -> 1 applied' in r.stdout, r.stderr
    return hub, keys


def forge(hub, tmp_path, name, key=None, metrics=None, lineage=None, files=None, aliases=(), alter=None):
    """Push a tag `name` made from m@v1's bundle and record by a second clone: other metrics, lineage or file hashes,
    signed with `key` (None: unsigned); `alter(bundle_dir)` changes the bundle after the record was written."""
    w = clone(hub, tmp_path / f'attacker-{name}')
    record = json.loads(git(w, 'tag', '--list', '--format=%(contents:body)', 'm@v1'))
    record.update(version=int(name.split('@v')[1]), metrics=metrics or record['metrics'], aliases=list(aliases),
                  lineage={**record['lineage'], **(lineage or {})}, files={**record['files'], **(files or {})})
    record['files'] = {k: v for k, v in record['files'].items() if v}
    d = tmp_path / f'bundle-{name}'
    d.mkdir()
    subprocess.run(f"git -C {w} archive --format=tar m@v1 | tar -x -C {d}", shell=True, check=True)
    if alter: alter(d)
    env = {**os.environ, 'GIT_INDEX_FILE': str(tmp_path / f'index-{name}'), 'GIT_DIR': str(w / '.git')}
    subprocess.run(['git', f'--work-tree={d}', 'add', '-A', '-f', '.'], cwd=d, check=True, env=env)
    tree = subprocess.run(['git', 'write-tree'], cwd=d, check=True, capture_output=True, text=True, env=env).stdout.strip()
    commit = git(w, 'commit-tree', tree, '-m', 'forged').strip()
    message = f"{name}: roc_auc=0.999\n\n{json.dumps(record)}"
    sign = ['-c', 'gpg.format=ssh', '-c', f'user.signingkey={key}', 'tag', '-s'] if key else ['tag', '-a']
    git(w, *sign, '-m', message, name, commit)
    git(w, 'push', '-q', 'origin', name)
    return w


@pytest.mark.parametrize('attack, refusal', [
    ('unsigned', 'm@v2 refused: its tag is not signed'),
    ('intruder', 'm@v2 refused: its tag is signed by a key that is not in the allowed signers (SHA256:'),
    ('altered', 'm@v2: bundle file metrics.json fails its hash'),
    ('off-main', 'm@v2 refused: it was built from commit'),
])
def test_a_forged_version_is_refused_in_one_line_and_nothing_changes(hub, tmp_path, attack, refusal):
    hub, keys = hub
    victim = clone(hub, tmp_path / 'victim')
    assert mlops(victim, 'pull').returncode == 0 and versions(victim) == {1: 'm@v1'} and champion(victim) == 1
    if attack == 'unsigned': forge(hub, tmp_path, 'm@v2', metrics={'f1': 0.999})
    if attack == 'intruder': forge(hub, tmp_path, 'm@v2', keys / 'intruder', metrics={'f1': 0.999})
    if attack == 'altered':   # the right key signed a record whose bundle was changed afterwards
        forge(hub, tmp_path, 'm@v2', keys / 'release', alter=lambda d: (d / 'metrics.json').write_text('{"f1": 0.999}\n'))
    if attack == 'off-main':  # the right key (leaked to a laptop) on a model built from an unreviewed branch
        w = clone(hub, tmp_path / 'laptop')
        git(w, 'checkout', '-q', '-b', 'unreviewed')
        git(w, 'commit', '-q', '--allow-empty', '-m', 'not reviewed')
        git(w, 'push', '-q', 'origin', 'unreviewed')
        forge(hub, tmp_path, 'm@v2', keys / 'release', lineage={'git_commit': git(w, 'rev-parse', 'HEAD').strip()})
    one_line_error(mlops(victim, 'pull'), refusal)
    assert versions(victim) == {1: 'm@v1'} and champion(victim) == 1
    assert not (victim / '.mlops_nb' / 'published' / 'm@v2').exists()
    fresh = clone(hub, tmp_path / 'fresh')
    one_line_error(mlops(fresh, 'pull', 'm@v2'), refusal)
    assert versions(fresh) == {1: 'm@v1'} and champion(fresh) == 1              # the rest of the pull proceeded
    r = mlops(fresh, 'verify')
    assert r.returncode == 1 and r.stdout.splitlines()[0].startswith('m@v1  OK  signed by release@tiny'), r.stdout
    assert r.stdout.splitlines()[1].startswith('m@v2  FAILED') and refusal.split(': ', 1)[-1] in r.stdout, r.stdout
    assert 'NOT BELIEVED' in mlops(fresh, 'history').stdout


def test_a_record_cannot_point_the_registry_at_a_file_of_its_choosing(hub, tmp_path):
    hub, keys = hub
    evil = tmp_path / 'evil.onnx'
    evil.write_bytes(b'not a model')
    forge(hub, tmp_path, 'm@v2', keys / 'release', files={'model.onnx': None}, aliases=['challenger'],
          lineage={'onnx': evil.as_uri(), 'reference_profile': evil.as_uri(), 'model_uri': evil.as_uri()})
    fresh = clone(hub, tmp_path / 'fresh')
    r = mlops(fresh, 'pull')
    assert r.returncode == 0 and 'm@v2' in r.stdout, r.stderr                # signed by the release key, from main
    tags = store(fresh).get_model_version('m', '2').tags
    assert evil.as_uri() not in tags.values() and 'mlops_nb.onnx' not in tags, tags
    assert tags['mlops_nb.model_uri'].startswith('models:/m-')
    from mlops_nb.config import load_config
    from mlops_nb.loader import fetch_version
    with pytest.raises(Exception, match='m@v2 has no ONNX export in its bundle'):
        fetch_version(load_config(fresh), 'm', 'challenger', 'onnx', tmp_path / 'dest')


def test_the_registry_log_cannot_be_rewritten_or_extended_unsigned(hub, tmp_path):
    hub, keys = hub
    victim = clone(hub, tmp_path / 'victim')
    assert mlops(victim, 'pull').returncode == 0 and champion(victim) == 1
    history = mlops(victim, 'history').stdout
    assert 'm@champion: (unset) -> 1 APPLIED by release@tiny' in history, history        # the signer, not $GITHUB_ACTOR
    # An entry appended in an unsigned commit (a fast-forward: a plain push is enough).
    w = clone(hub, tmp_path / 'attacker')
    git(w, 'fetch', '-q', 'origin', 'mlops-nb/registry')
    log = git(w, 'show', 'origin/mlops-nb/registry:audit.jsonl')
    forged = json.loads(log.splitlines()[-1]) | {'to': 2, 'from': 1, 'who': 'release-bot'}
    def push(parents, text, force=False):
        d = tmp_path / 'log'
        d.mkdir(exist_ok=True)
        (d / 'audit.jsonl').write_text(text)
        env = {**os.environ, 'GIT_INDEX_FILE': str(tmp_path / 'idx'), 'GIT_DIR': str(w / '.git')}
        subprocess.run(['git', f'--work-tree={d}', 'add', '-A', '-f', '.'], cwd=d, check=True, env=env)
        tree = subprocess.run(['git', 'write-tree'], cwd=d, check=True, capture_output=True, text=True, env=env).stdout.strip()
        commit = git(w, 'commit-tree', tree, *parents, '-m', 'applied').strip()
        git(w, 'push', '-q', *(['-f'] if force else []), 'origin', f'{commit}:refs/heads/mlops-nb/registry')
    push(['-p', 'origin/mlops-nb/registry'], log + json.dumps(forged) + '\n')
    one_line_error(mlops(victim, 'pull'), 'registry log commit', 'not signed; nothing was changed')
    assert champion(victim) == 1
    # A force-pushed orphan: history erased, a forged entry on top.
    push([], json.dumps({**forged, 'prev': ''}) + '\n', force=True)
    one_line_error(mlops(victim, 'pull'), 'registry log rewritten')
    assert champion(victim) == 1
    one_line_error(mlops(victim, 'reconcile', env=signed(keys / 'release')), 'registry log rewritten')
    fresh = clone(hub, tmp_path / 'fresh')                 # never saw the real log: the signature still says no
    one_line_error(mlops(fresh, 'pull'), 'registry log commit', 'not signed')
    assert versions(fresh) == {}


def test_allowed_signers_count_only_as_committed_on_main(hub, tmp_path):
    hub, keys = hub
    w = clone(hub, tmp_path / 'attacker')
    git(w, 'checkout', '-q', '-b', 'trust-me')
    (w / '.mlops-nb' / 'allowed_signers').write_text(f"release@tiny {(keys / 'intruder.pub').read_text()}")
    git(w, 'commit', '-qam', 'trust my key')
    git(w, 'push', '-q', 'origin', 'trust-me')
    forge(hub, tmp_path, 'm@v2', keys / 'intruder', metrics={'f1': 0.999},
          lineage={'git_commit': git(w, 'rev-parse', 'HEAD').strip()})
    one_line_error(mlops(w, 'pull'), 'm@v2 refused: its tag is signed by a key that is not in the allowed signers')
    assert versions(w) == {1: 'm@v1'}                        # the branch's file, even checked out, counts for nothing


def test_a_rotated_key_keeps_older_versions_verifying(hub, tmp_path):
    hub, keys = hub
    job = clone(hub, tmp_path / 'job')
    time.sleep(1.1)                                           # the rotation happens after v1 was signed
    until = time.strftime('%Y%m%d%H%M%SZ', time.gmtime())
    time.sleep(1.1)
    (job / '.mlops-nb' / 'allowed_signers').write_text(
        f"release@tiny valid-before=\"{until}\" {(keys / 'release.pub').read_text()}"
        f"release@tiny {(keys / 'release2.pub').read_text()}")
    git(job, 'commit', '-qam', 'rotate the release key')
    git(job, 'push', '-q', 'origin', 'main')
    register(job, 0.7)
    one_line_error(mlops(job, 'publish', env={**os.environ, KEY_ENV: ''}), 'publishing needs the release key')
    r = mlops(job, 'publish', env=signed(keys / 'release2'))
    assert r.returncode == 0 and 'published m@v2' in r.stdout, r.stderr
    forge(hub, tmp_path, 'm@v3', keys / 'release')            # the old key, after its valid-before
    r = mlops(clone(hub, tmp_path / 'auditor'), 'verify')
    lines = r.stdout.splitlines()
    assert r.returncode == 1 and lines[0].startswith('m@v1  OK  signed by release@tiny'), r.stdout
    assert lines[1].startswith('m@v2  OK  signed by release@tiny'), r.stdout
    assert lines[2] == 'm@v3  FAILED  its tag is signed with a key no longer valid at its date', r.stdout
    assert lines[3] == 'registry log  OK'


def test_without_allowed_signers_it_works_and_says_versions_are_unauthenticated(tmp_path):
    hub = tiny_hub(tmp_path, '  f1: ">= 0.1"\n')
    a = clone(hub, tmp_path / 'a')
    register(a, 0.5)
    r = mlops(a, 'publish')
    assert r.returncode == 0 and 'published m@v1' in r.stdout, r.stderr
    assert r.stdout.count('published versions are unauthenticated') == 1
    b = clone(hub, tmp_path / 'b')
    r = mlops(b, 'verify')
    assert r.returncode == 1 and r.stdout.startswith('m@v1  FAILED  no .mlops-nb/allowed_signers on the main branch')
    (b / 'mlops.yaml').write_text((b / 'mlops.yaml').read_text() + 'registry: {require_signatures: true}\n')
    one_line_error(mlops(b, 'pull'), 'm@v1 refused: mlops.yaml requires signatures, and there is no .mlops-nb/allowed_signers')
    assert versions(b) == {}
    register(a, 0.6)
    (a / 'mlops.yaml').write_text((a / 'mlops.yaml').read_text() + 'registry: {require_signatures: true}\n')
    one_line_error(mlops(a, 'publish'), 'mlops.yaml requires signatures, and there is no', 'nothing was published')
