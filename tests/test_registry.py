"""Registry and GitOps promotion on a real MLflow SQLite store, through the `mlops-nb` command."""
import json

import mlflow
import pytest
from conftest import mlops, register_versions, write_nb

MLOPS = 'name: reg\nsteps:\n  a: {notebook: a.ipynb}\ngates:\n  accuracy: ">= 0.5"\n  f1_macro: ">= champion - 0.01"\n'


@pytest.fixture
def reg(tmp_path):
    "A project whose registry holds model `m` versions 1-3 (f1 0.60, 0.70, 0.50; accuracy 0.8 each)."
    write_nb(tmp_path / 'a.ipynb', None, 'x = 1')
    (tmp_path / 'mlops.yaml').write_text(MLOPS)
    (tmp_path / 'models.yaml').write_text('# desired state\nmodels:\n  m: {}\n')
    client = register_versions(tmp_path, 'm', [{'f1_macro': f1, 'accuracy': 0.8} for f1 in (0.60, 0.70, 0.50)], 'challenger')
    return tmp_path, client


def champion(client):
    try: return int(client.get_model_version_by_alias('m', 'champion').version)
    except mlflow.exceptions.MlflowException: return None


def test_promote_reconcile_idempotent_rollback(reg):
    root, client = reg
    r = mlops(root, 'promote', 'm', '1')
    assert r.returncode == 0, r.stderr
    assert 'pass  f1_macro >= champion - 0.01: 0.6 (no champion to compare)' in r.stdout
    assert 'champion: 1' in (root / 'models.yaml').read_text() and champion(client) is None  # file first, registry later
    assert 'm@champion: (unset) -> 1' in mlops(root, 'status').stdout  # drift reported
    assert 'plan: 1 alias change' in mlops(root, 'reconcile', '--dry-run').stdout and champion(client) is None
    r = mlops(root, 'reconcile')
    assert r.returncode == 0 and '~ m@champion: (unset) -> 1' in r.stdout and champion(client) == 1
    assert 'nothing to do' in mlops(root, 'reconcile').stdout  # idempotent
    assert 'agree' in mlops(root, 'status').stdout
    assert mlops(root, 'promote', 'm', '2').returncode == 0 and mlops(root, 'reconcile').returncode == 0
    assert champion(client) == 2
    audit = [json.loads(line) for line in (root / 'models.audit.jsonl').read_text().splitlines()]
    assert [(a['from'], a['to']) for a in audit] == [(None, 1), (1, 2)]
    assert audit[1]['gates'][1] == {'gate': 'f1_macro', 'rule': '>= champion - 0.01', 'passed': True, 'detail': '0.7 >= 0.59'}
    assert {'who', 'when', 'commit'} <= set(audit[1])
    assert 'was 1' in client.get_model_version('m', '2').tags['mlops_nb.audit.champion']
    r = mlops(root, 'rollback', 'm')
    assert r.returncode == 0 and 'm.champion = 1 (was 2)' in r.stdout and champion(client) == 2
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
    assert 'not in the registry' in mlops(root, 'promote', 'm', '9').stderr


@pytest.mark.parametrize('text, message', [
    ('models:\n  m: {champion: 99}\n', "models.yaml: m.champion -> version 99: no such version of 'm' in the registry"),
    ('models:\n  m: {champion: abc}\n', "models.yaml:2: models.m.champion: Input should be a valid integer"),
    ('models:\n  m: {champion: 1}\nextra: 1\n', "models.yaml:3: unknown key 'extra' (allowed here: models)"),
    ('models: [\n', 'models.yaml:2: invalid YAML'),
    ('models:\n  m: {Champion!: 1}\n', "models.yaml:2: models.m.Champion!.[key]: String should match pattern"),
])
def test_bad_models_file_changes_nothing(reg, text, message):
    root, client = reg
    assert mlops(root, 'promote', 'm', '1').returncode == 0 and mlops(root, 'reconcile').returncode == 0
    (root / 'models.yaml').write_text(text)
    r = mlops(root, 'reconcile')
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert champion(client) == 1
    assert len((root / 'models.audit.jsonl').read_text().splitlines()) == 1


def test_manual_alias_change_is_drift(reg):
    root, client = reg
    assert mlops(root, 'promote', 'm', '1').returncode == 0 and mlops(root, 'reconcile').returncode == 0
    client.set_registered_model_alias('m', 'champion', '3')  # someone clicked in the UI
    assert 'm@champion: 3 -> 1' in mlops(root, 'status').stdout
    assert mlops(root, 'reconcile').returncode == 0 and champion(client) == 1


def test_gate_with_code_is_rejected(tmp_path):
    write_nb(tmp_path / 'a.ipynb', None, 'x = 1')
    marker = tmp_path / 'pwned'
    (tmp_path / 'mlops.yaml').write_text(
        f"name: x\nsteps:\n  a: {{notebook: a.ipynb}}\ngates:\n  f1: \"__import__('os').system('touch {marker}')\"\n")
    r = mlops(tmp_path, 'validate')
    assert r.returncode == 1 and 'mlops.yaml:5: gates.f1: cannot parse gate' in r.stderr
    assert not marker.exists()
