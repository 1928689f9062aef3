"""Dask workers that cannot see the project folder: steps and sweep trials reach them, and come back, through a real
MLflow tracking server (PostgreSQL store, proxied artifacts), by content hash."""
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest
from conftest import BIN, clean_env, mlops, require_service, write_nb

sys.path.insert(0, str(Path(__file__).parent))
from services import free_port, pg_bin, remote_cluster, remote_yaml  # noqa: E402

BLOB_PUT = re.compile(r'"PUT /api/2\.0/mlflow-artifacts/artifacts/mlops-nb-blobs/(\w\w/\w{64}) HTTP')


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    "The cluster of `services.remote_cluster`: its workers cannot see the folder `hidden`, where the projects live."
    require_service(pg_bin() is not None, "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does it)")
    require_service(shutil.which('unshare') is not None and os.geteuid() == 0,
                    "unshare --mount needs root and util-linux (the workers' private mount namespace)")
    with remote_cluster(tmp_path_factory.mktemp('hidden')) as c: yield c


def _weather(root: Path, where_step: bool) -> Path:
    r = subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root), '--name', 'weather'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if where_step:  # a step that logs whether it can see the project folder it was started from; and writes files
        # bigger than a task's result carries (`cluster.RESULT_INLINE`): an output and a file in its step folder
        write_nb(root / 'notebooks' / 'where.ipynb', None, 'import os, mlops_nb as mn\n'
                 f'mn.log_metrics({{"sees_project": int(os.path.exists({str(root / "mlops.yaml")!r}))}})\n'
                 "mn.output_path('data/noise.bin').write_bytes(os.urandom(3 << 20))\n"
                 "open(os.path.join(os.environ['MLOPS_NB_STEP_DIR'], 'noise.bin'), 'wb').write(os.urandom(2 << 20))")
        y = root / 'mlops.yaml'
        y.write_text(y.read_text().replace('\nprofiles:', '  where:\n    notebook: notebooks/where.ipynb\n    needs: [ingest]\n'
                                           '    outputs: [data/noise.bin]\n\nprofiles:'))
    return root


def _skops_content(path: Path) -> dict:
    """A skops file's members, without what differs between two runs of the same code: the zip timestamps and the
    Python object ids (`__id__`) it records. (Two local runs of the weather pipeline differ there too.)"""
    def strip(o):
        if isinstance(o, dict): return {k: strip(v) for k, v in o.items() if k != '__id__'}
        return [strip(v) for v in o] if isinstance(o, list) else o
    with zipfile.ZipFile(path) as z:
        return {n: strip(json.loads(z.read(n))) if n == 'schema.json' else z.read(n) for n in z.namelist()}


def _blob_puts(cluster) -> collections.Counter:
    return collections.Counter(BLOB_PUT.findall(cluster['log'].read_text()))


def _record(path: Path) -> dict:
    "A step record a worker may be writing or deleting right now ({} then)."
    try: return json.loads(path.read_text())
    except (OSError, ValueError): return {}


def _sha(path: Path) -> str:
    from mlops_nb.shipping import sha256_file
    return sha256_file(path)


def test_workers_that_cannot_see_the_project_say_so(cluster):
    "`shared_filesystem` left at its default with workers that share no disk: the error says so, and what to set."
    root = remote_yaml(_weather(cluster['hidden'] / 'shared-by-mistake', where_step=False), cluster)
    y = root / 'mlops.yaml'   # an experiment of its own on the server: the other tests count the runs of `weather`
    y.write_text(y.read_text().replace('shared_filesystem: false', '').replace('name: weather', 'name: shared-by-mistake', 1))
    r = mlops(root, 'run', '--profile', 'pr', 'ingest')
    assert r.returncode == 1, r.stderr
    assert 'cannot see the project folder' in r.stderr and 'Set `shared_filesystem: false` in mlops.yaml' in r.stderr, r.stderr
    assert 'mlops.yaml: not found' not in r.stderr


def test_weather_pipeline_and_sweep_on_workers_that_cannot_see_the_project(cluster):
    from mlflow.tracking import MlflowClient
    hidden = cluster['hidden']
    local = _weather(hidden / 'local', where_step=False)
    r = mlops(local, 'run', '--profile', 'pr')
    assert r.returncode == 0, r.stderr
    root = remote_yaml(_weather(hidden / 'remote', where_step=True), cluster)
    r = mlops(root, 'run', '--profile', 'pr')
    assert r.returncode == 0, r.stderr
    assert 'dask executor, 2 at a time' in r.stderr and not (root / 'mlruns.db').exists()

    # where each step ran: a scratch project on a worker, which could not see this one
    run_dir = next((root / 'runs').iterdir())
    steps = ['ingest', 'validate', 'features', 'train', 'evaluate', 'register', 'where']
    for s in steps:
        rec = json.loads((run_dir / s / 'step.json').read_text())
        ctx = json.loads((run_dir / s / 'context.json').read_text())
        assert rec['status'] == 'done' and rec['worker'].startswith('tls://127.0.0.1:'), rec
        assert ctx['root'].startswith(str(cluster['outside'] / 'worker-')) and rec['source_dir'] == str(run_dir / s)
        assert (run_dir / s / Path(rec['notebook']).name).is_file()        # the executed notebook came back
    assert json.loads((run_dir / 'where' / 'step.json').read_text())['metrics'] == {'sees_project': 0}
    noise = run_dir / 'where' / 'noise.bin'  # the big file of the step folder came back through the server
    assert noise.stat().st_size == 2 << 20 and f'{_sha(noise)[:2]}/{_sha(noise)}' in _blob_puts(cluster)

    # every declared output landed, byte for byte what the worker wrote; the same data as the local executor's run
    outputs = {}
    for s in steps:
        outputs.update(json.loads((run_dir / s / 'step.json').read_text())['outputs'])
    assert sorted(outputs) == sorted(['data/days.parquet', 'data/train.parquet', 'data/val.parquet', 'data/test.parquet',
                                      'data/preprocessor.skops', 'data/noise.bin'])
    for rel, sha in outputs.items():
        assert _sha(root / rel) == sha, rel
        if rel == 'data/noise.bin': assert f'{sha[:2]}/{sha}' in _blob_puts(cluster)  # too big to come back inline
        elif rel.endswith('.parquet'): assert _sha(root / rel) == _sha(local / rel), rel
        else: assert _skops_content(root / rel) == _skops_content(local / rel), rel

    # MLflow on the server holds every run, all finished, and the registered version
    client = MlflowClient(cluster['url'], cluster['url'])
    exp = client.get_experiment_by_name('weather')
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 + len(steps) and {r.info.status for r in runs} == {'FINISHED'}
    versions = client.search_model_versions("name = 'weather'")
    assert len(versions) == 1
    source = json.loads((run_dir / 'train' / 'step.json').read_text())['mlflow_run_id']
    assert versions[0].tags['mlops_nb.source_run'] == source

    # an 8-trial sweep; one worker process killed while trials run
    puts_before = _blob_puts(cluster)
    proc = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(root), 'sweep', 'train', '--profile', 'pr', '--grid',
                             'model=random_forest', 'n_estimators=30,60', 'max_depth=4,8', 'min_samples_leaf=5,10'],
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    workers = {c.pid for n in cluster['workers'] for c in psutil.Process(n.pid).children()
               if 'spawn_main' in ' '.join(c.cmdline())}
    assert len(workers) == 2, workers  # each nanny's worker process
    busy, deadline = None, time.time() + 120
    while busy is None and proc.poll() is None and time.time() < deadline:
        busy = next((r['pid'] for r in map(_record, cluster['outside'].glob('worker-*/**/train-*/step.json'))
                     if r.get('status') == 'running' and r.get('pid') in workers), None)
        time.sleep(0.02)
    assert busy, 'no worker was seen in the middle of a trial'
    os.kill(busy, signal.SIGKILL)  # its trial's MLflow run has started and its notebook is running
    err = proc.stderr.read()
    assert proc.wait(600) == 0, err
    sweep = json.loads(max((root / 'runs').glob('*/run.json'), key=lambda f: f.parent.name).read_text())
    assert sweep['kind'] == 'sweep' and len(sweep['trials']) == 8 and sweep['status'] == 'done', sweep
    trials = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{sweep['mlflow_run_id']}'")
    finished = collections.Counter(r.data.tags['mlflow.runName'] for r in trials if r.info.status == 'FINISHED')
    assert len(finished) == 8 and set(finished.values()) == {1}, finished      # each trial finished exactly once
    assert {r.info.status for r in trials} == {'FINISHED', 'KILLED'}            # the lost attempt: killed, not finished
    imports = []  # seconds the trial's import cell took: a warm kernel has pandas, scikit-learn and skops imported
    for d in (root / 'runs' / sweep['run_id']).glob('train-*'):
        assert json.loads((d / 'context.json').read_text())['root'].startswith(str(cluster['outside'] / 'worker-'))
        cells = json.loads((d / 'train.ipynb').read_text())['cells']
        imports += [c['metadata']['papermill']['duration'] for c in cells if ''.join(c['source']).startswith('import pandas')]
    assert len(imports) == 8 and sum(t < 0.5 for t in imports) >= 7, imports

    # the blob store: each content uploaded once, across the pipeline, the sweep and its retried trial
    puts = _blob_puts(cluster)
    assert puts and set(puts.values()) == {1}, puts.most_common(3)
    stored = [f for f in (cluster['outside'] / 'artifacts' / 'mlops-nb-blobs').rglob('*') if f.is_file()]
    assert len(stored) == len(puts)
    shipped_inputs = {_sha(root / rel) for rel in ['mlops.yaml', 'notebooks/train.ipynb', 'notebooks/weather_features.py',
                                                    *outputs]}
    assert all(any(p.endswith(sha) for p in puts) for sha in shipped_inputs)
    assert not [p for p in puts if p in puts_before and puts[p] != puts_before[p]]


def test_bad_inputs_are_one_line_and_leave_nothing(cluster, tmp_path):
    hidden = cluster['hidden']
    root = hidden / 'bad'
    write_nb(root / 'a.ipynb', None, 'import only_on_the_runner\nimport mlops_nb as mn\nmn.log_metric("x", 1)')
    write_nb(root / 'b.ipynb', None, 'import mlops_nb as mn\nmn.log_metric("x", 1)')
    (root / 'mlops.yaml').write_text('name: bad\ntracking_uri: sqlite:///mlruns.db\nexecutor: warm\n'
                                     'steps:\n  a: {notebook: a.ipynb, outputs: [out.txt]}\n  b: {notebook: b.ipynb}\n')
    remote_yaml(root, cluster)
    base = (root / 'mlops.yaml').read_text()
    site = tmp_path / 'site'          # a package the runner's Python has and the workers' does not
    (site / 'only_on_the_runner').mkdir(parents=True)
    (site / 'only_on_the_runner' / '__init__.py').write_text('')
    env = {**os.environ, 'PYTHONPATH': str(site)}

    def refused(args, expect, yaml=None, env=None):
        if yaml: (root / 'mlops.yaml').write_text(yaml)
        r = mlops(root, *args, env=env)
        assert r.returncode == 1 and expect in r.stderr, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith('Error:')]
        assert len(errors) == 1 and expect in errors[0], r.stderr
        assert not (root / 'out.txt').exists()
        return errors[0]

    line = refused(['run', 'a'], 'cannot import only_on_the_runner (a.ipynb imports it)', env=env)
    assert re.search(r"step 'a': Dask worker tls://127\.0\.0\.1:\d+ cannot import", line), line
    assert not (root / '.mlops_nb' / 'cache').exists() or not list((root / '.mlops_nb' / 'cache').iterdir())

    dead = free_port()
    refused(['run', 'b'], f'tracking server http://127.0.0.1:{dead} unreachable (Connection refused)',
            base.replace(cluster['url'], f'http://127.0.0.1:{dead}'))
    refused(['run', 'b'], f'Dask scheduler tls://127.0.0.1:{dead} unreachable',
            base.replace(cluster['scheduler'], f'tls://127.0.0.1:{dead}'))
    refused(['run', 'b'], 'plain TCP', base.replace(cluster['scheduler'], cluster['scheduler'].replace('tls', 'tcp')))
    refused(['run', 'b'], 'shipping files to workers needs an MLflow tracking server',
            base.replace(cluster['url'], 'sqlite:///mlruns.db'))
    (root / 'mlops.yaml').write_text(base)
    r = mlops(root, 'run', 'b')      # and the project still runs once the input is right
    assert r.returncode == 0, r.stderr
