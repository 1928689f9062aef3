"""Promotion the GitOps way on published versions, through the `mlops-nb` command: a real MLflow SQLite store, a real
git repository with a bare remote standing in for GitHub."""
import pytest
from conftest import clone, git, mlops, register_versions, tiny_hub, write_nb
from mlflow.tracking import MlflowClient

from mlops_nb.config import load_config
from mlops_nb.publish import publish


@pytest.fixture
def reg(tmp_path):
    "A clone of a project whose model `m` has versions 1-3 published (f1 0.60, 0.70, 0.50; accuracy 0.8 each)."
    hub = tiny_hub(tmp_path, '  accuracy: ">= 0.5"\n  f1_macro: ">= champion - 0.01"\n')
    root = clone(hub, tmp_path / 'clone')
    for n, f1 in enumerate((0.60, 0.70, 0.50), 1):
        register_versions(root, 'm', [{'f1_macro': f1, 'accuracy': 0.8}], 'challenger')
        # what `mlops-nb publish` does, in this process (the command itself is tested in test_gitops.py)
        assert [p.tag for p in publish(load_config(root), echo=lambda _: None)] == [f'm@v{n}']
    uri = f"sqlite:///{root / 'mlruns.db'}"
    return root, MlflowClient(uri, uri)


def champion(client):
    try: return int(client.get_model_version_by_alias('m', 'champion').version)
    except Exception: return None


def merged(root, message='merge'):
    git(root, 'commit', '-qam', message)
    git(root, 'push', '-q', 'origin', 'main')


def test_promote_reconcile_idempotent_rollback(reg):
    root, client = reg
    r = mlops(root, 'promote', 'm', '1')
    assert r.returncode == 0, r.stderr
    assert 'pass  f1_macro >= champion - 0.01: 0.6 (no champion to compare)' in r.stdout
    assert 'champion: 1' in (root / 'models.yaml').read_text() and champion(client) is None  # file first, registry later
    assert 'm@champion: (unset) -> 1' in mlops(root, 'status').stdout  # drift reported
    plan = mlops(root, 'reconcile', '--dry-run').stdout
    assert 'm@champion: (unset) -> 1 (plan: gates pass)' in plan and champion(client) is None
    merged(root)
    r = mlops(root, 'reconcile')
    assert r.returncode == 0 and '~ m@champion: (unset) -> 1 applied' in r.stdout and champion(client) == 1
    assert 'nothing to do' in mlops(root, 'reconcile').stdout  # idempotent
    assert 'agree' in mlops(root, 'status').stdout
    assert mlops(root, 'promote', 'm', '2').returncode == 0
    merged(root)
    assert mlops(root, 'reconcile').returncode == 0 and champion(client) == 2
    history = mlops(root, 'history', 'm').stdout.splitlines()
    moves = [h for h in history if 'm@champion' in h]
    assert len(moves) == 2 and 'm@champion: (unset) -> 1 APPLIED by' in moves[0] and ': 1 -> 2 APPLIED by' in moves[1]
    r = mlops(root, 'rollback', 'm')
    assert r.returncode == 0 and 'm.champion = 1 (was 2)' in r.stdout and champion(client) == 2
    merged(root)
    assert mlops(root, 'reconcile').returncode == 0 and champion(client) == 1


def test_gate_failure_refused_and_file_unchanged(reg):
    root, client = reg
    assert mlops(root, 'promote', 'm', '2').returncode == 0
    before = (root / 'models.yaml').read_bytes()
    r = mlops(root, 'promote', 'm', '3')
    assert r.returncode == 1
    assert 'm version 3 not promoted: failed gate f1_macro >= champion - 0.01 (0.5 >= 0.69)' in r.stderr
    assert 'FAIL  f1_macro' in r.stderr and 'pass  accuracy' in r.stderr
    assert (root / 'models.yaml').read_bytes() == before
    assert 'm version 9: not published, and not in the local registry' in mlops(root, 'promote', 'm', '9').stderr


@pytest.mark.parametrize('text, message', [
    ('models:\n  m: {champion: 99}\n', "models.yaml: m.champion -> version 99: m@v99 is not published"),
    ('models:\n  m: {champion: abc}\n', "models.yaml:2: models.m.champion: Input should be a valid integer"),
    ('models:\n  m: {champion: 1}\nextra: 1\n', "models.yaml:3: unknown key 'extra' (allowed here: models)"),
    ('models: [\n', 'models.yaml:2: invalid YAML'),
    ('models:\n  m: {Champion!: 1}\n', "models.yaml:2: models.m.Champion!.[key]: String should match pattern"),
])
def test_bad_models_file_changes_nothing(reg, text, message):
    root, client = reg
    assert mlops(root, 'promote', 'm', '1').returncode == 0
    merged(root)
    assert mlops(root, 'reconcile').returncode == 0
    log = git(root, 'rev-parse', 'origin/mlops-nb/registry')
    (root / 'models.yaml').write_text(text)
    merged(root, 'a bad models.yaml, merged')
    r = mlops(root, 'reconcile')
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert champion(client) == 1
    assert git(root, 'ls-remote', 'origin', 'refs/heads/mlops-nb/registry').split()[0] == log.strip()


def test_a_hand_moved_alias_is_drift_and_pull_restores_it(reg):
    root, client = reg
    assert mlops(root, 'promote', 'm', '1').returncode == 0
    (root / 'models.yaml').write_text('models:\n  m: {champion: 2}\n')
    assert 'models.yaml has uncommitted changes' in mlops(root, 'reconcile').stderr
    (root / 'models.yaml').write_text('models:\n  m: {champion: 1}\n')
    merged(root)
    assert mlops(root, 'reconcile').returncode == 0
    client.set_registered_model_alias('m', 'champion', '3')  # someone clicked in the MLflow UI
    assert 'm@champion: 3 -> 1' in mlops(root, 'status').stdout
    assert mlops(root, 'pull').returncode == 0 and champion(client) == 1  # git says where the champion is


def test_gate_with_code_is_rejected(tmp_path):
    write_nb(tmp_path / 'a.ipynb', None, 'x = 1')
    marker = tmp_path / 'pwned'
    (tmp_path / 'mlops.yaml').write_text(
        f"name: x\nsteps:\n  a: {{notebook: a.ipynb}}\ngates:\n  f1: \"__import__('os').system('touch {marker}')\"\n")
    r = mlops(tmp_path, 'validate')
    assert r.returncode == 1 and 'mlops.yaml:5: gates.f1: cannot parse gate' in r.stderr
    assert not marker.exists()
