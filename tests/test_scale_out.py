"""Scaling out: the weather pipeline on a real PostgreSQL tracking store, two projects running at once."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, clean_env, mlops, require_service, write_nb
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).parent))
from services import pg_bin, postgres  # noqa: E402


@pytest.fixture(scope='module')
def pg():
    require_service(pg_bin() is not None, "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    with postgres() as uri: yield uri


def _project(root: Path, uri: str, artifacts: Path) -> Path:
    "`mlops-nb init` of the weather example, moved to the shared store by editing mlops.yaml only."
    r = subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root), '--name', 'weather'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    y = root / 'mlops.yaml'
    text = y.read_text()
    assert 'tracking_uri: sqlite:///mlruns.db' in text
    y.write_text(text.replace('tracking_uri: sqlite:///mlruns.db', f'tracking_uri: {uri}\nartifact_location: {artifacts}'))
    return root


def test_weather_on_postgres_two_concurrent_runs_register_distinct_versions(tmp_path, pg):
    shared = tmp_path / 'shared-artifacts'
    roots = [_project(tmp_path / who, pg, shared) for who in ('alice', 'bob')]
    procs = [subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(r), 'run', '--profile', 'pr', '--executor', 'warm'],
                              stderr=subprocess.PIPE, text=True, env=clean_env()) for r in roots]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n=====\n".join(errs)
    for r, err in zip(roots, errs, strict=True):
        assert not (r / 'mlruns.db').exists()            # nothing fell back to the embedded store
        assert 'postgresql+psycopg://postgres@127.0.0.1' in err
    client = MlflowClient(pg, pg)
    versions = client.search_model_versions("name = 'weather'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    sources = {v.tags['mlops_nb.source_run'] for v in versions}
    assert len(sources) == 2                              # one per pipeline run, no conflict, no overwrite
    exp = client.get_experiment_by_name('weather')
    assert exp.artifact_location == shared.resolve().as_uri()
    runs = client.search_runs([exp.experiment_id], "tags.`mlops_nb.kind` = 'run'")
    parents = [r for r in runs if 'mlflow.parentRunId' not in r.data.tags]
    assert sorted(p.info.status for p in parents) == ['FINISHED', 'FINISHED']
    assert {r.info.status for r in runs} == {'FINISHED'} and len(runs) == 2 * 7  # 6 steps and the parent, twice
    for v in versions:                                    # each version's model files are in the shared folder
        location = client.get_logged_model(v.source.removeprefix('models:/')).artifact_location
        assert location.startswith(shared.resolve().as_uri()) and (Path(location[7:]) / 'MLmodel').is_file(), location
    shutil.rmtree(shared)


def test_a_password_in_the_store_uri_is_never_printed(tmp_path, pg):
    "PostgreSQL here trusts any password: the URI carries one that must appear in no output or record."
    uri = pg.replace('postgres@', 'postgres:pg-pa55-word@')
    write_nb(tmp_path / 'a.ipynb', None, 'import mlops_nb as mn\nmn.log_metric("x", 1)')
    (tmp_path / 'mlops.yaml').write_text(f'name: pw\ntracking_uri: {uri}\nartifact_location: artifacts\nsteps:\n'
                                         '  a: {notebook: a.ipynb}\n')
    (tmp_path / 'models.yaml').write_text('models:\n  m: {}\n')
    outputs = [mlops(tmp_path, *cmd) for cmd in (['run'], ['status'], ['serve', 'm'], ['runs'])]
    assert outputs[0].returncode == 0 and 'postgres:***@127.0.0.1' in outputs[0].stderr, outputs[0].stderr
    assert 'postgres:***@127.0.0.1' in outputs[1].stdout and 'no such alias' in outputs[2].stderr
    assert not [o.args for o in outputs if 'pg-pa55-word' in o.stdout + o.stderr]
    assert not [f for f in tmp_path.rglob('*') if f.is_file() and f.name != 'mlops.yaml' and b'pg-pa55-word' in f.read_bytes()]
