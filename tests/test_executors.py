"""Executors: the warm-kernel pool (isolation, preloading, a crashing kernel), `--jobs`, and Dask sweeps."""
import json
import os
import signal
import time
from pathlib import Path

import psutil
from conftest import imported, mlops, write_nb
from services import dask_cluster

TWO_STEPS = """\
name: iso
steps:
  a: {notebook: notebooks/a.ipynb}
  b: {notebook: notebooks/b.ipynb, needs: [a]}
"""


def _step(root, step, run='*'):
    return json.loads(sorted(root.glob(f'runs/{run}/{step}/step.json'))[-1].read_text())


def _two_steps(root):
    "Step a leaves a variable, an environment variable and a changed working directory behind; b looks for them."
    write_nb(root / 'notebooks' / 'a.ipynb', None, 'import os\nleak = 42\nos.environ["MN_LEAK"] = "1"\nos.chdir("/")',
             'import mlops_nb as mn\nmn.log_metric("a_ran", 1)')
    write_nb(root / 'notebooks' / 'b.ipynb', None,
             'import os, sys\npreloaded = "fractions" in sys.modules  # before this notebook imports it\n'
             '# the fork server mapped modules to distributions for MLflow: a kernel saving a model does not again\n'
             'mapped = getattr(sys.modules.get("mlflow.utils.requirements_utils"), "_MODULES_TO_PACKAGES", None) is not None',
             'import fractions\nimport matplotlib.pyplot as plt\nimport mlops_nb as mn',
             'plt.plot([1, 2, 3])\nplt.show()',
             'mn.log_metrics({"leak_seen": "leak" in globals(), "env_seen": "MN_LEAK" in os.environ,\n'
             '                "cwd_is_notebooks": os.getcwd() == os.path.dirname(os.path.abspath("b.ipynb")) and\n'
             '                                    os.path.basename(os.getcwd()) == "notebooks",\n'
             '                "step_dir_ok": os.environ["MLOPS_NB_STEP_DIR"].endswith("/b"), "preloaded": preloaded,\n'
             '                "mlflow_mapped": mapped})')
    (root / 'mlops.yaml').write_text(TWO_STEPS)


def test_warm_executor_isolates_steps_and_preloads_imports(tmp_path):
    for executor, preloaded in (('warm', 1.0), ('local', 0.0)):
        root = tmp_path / executor
        _two_steps(root)
        r = mlops(root, 'run', '--executor', executor)
        assert r.returncode == 0, r.stderr
        m = _step(root, 'b')['metrics']
        executed = next(root.glob('runs/*/b/b.ipynb')).read_text()
        assert '"image/png"' in executed  # figures show inline, as in Jupyter
        assert m == {'leak_seen': 0.0, 'env_seen': 0.0, 'cwd_is_notebooks': 1.0, 'step_dir_ok': 1.0, 'preloaded': preloaded,
                     'mlflow_mapped': preloaded}
        assert ('(warm executor' in r.stderr) == (executor == 'warm'), r.stderr
        assert 'Task was destroyed' not in r.stderr   # the pool shut down cleanly


def test_executor_from_mlops_yaml(tmp_path):
    _two_steps(tmp_path)
    (tmp_path / 'mlops.yaml').write_text(TWO_STEPS + 'executor: warm\n')
    r = mlops(tmp_path, 'run')
    assert r.returncode == 0, r.stderr
    assert '(warm executor, 1 at a time)' in r.stderr
    assert _step(tmp_path, 'b')['metrics']['preloaded'] == 1.0


def test_the_pool_shuts_each_kernel_down_once_and_closes_cleanly(tmp_path):
    "A kernel released by its step (not waited for) and again by `close`: one shutdown, finished before the loop stops."
    import subprocess
    import sys
    script = tmp_path / 'pool.py'   # a script: the fork server re-imports __main__
    script.write_text('''import json, tempfile
from mlops_nb.kernels import KernelPool
if __name__ == '__main__':
    pool = KernelPool(tempfile.mkdtemp(), size=1)
    pool.plan([('json',)])
    km = pool.take(('json',))
    first = pool.release(km)       # as the runner releases a kernel after its step, without waiting
    same = pool.release(km) is first
    first.result(60)
    kept = len(pool._stopping)     # a Dask worker's pool lives across tasks: nothing kept per released kernel
    again = pool.release(km).done()  # released after its shutdown: nothing more to do
    pool.close()
    print(json.dumps({'same': same, 'done': first.done(), 'kept': kept, 'again': again,
                      'loop_closed': pool.loop.is_closed(), 'alive': km.process.is_alive()}))
''')
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {'same': True, 'done': True, 'kept': 0, 'again': True, 'loop_closed': True,
                                    'alive': False}
    assert 'Task was destroyed' not in r.stderr and 'Traceback' not in r.stderr


def test_a_killed_runner_leaves_no_kernel_behind(tmp_path):
    "SIGKILL the warm runner mid-step: its fork server and kernels (the running one and those warming) exit too."
    import subprocess

    from conftest import BIN, clean_env
    _two_steps(tmp_path)
    write_nb(tmp_path / 'notebooks' / 'a.ipynb', None, 'import time\ntime.sleep(60)')
    proc = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(tmp_path), 'run', '--executor', 'warm'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    deadline = time.time() + 60
    while not list(tmp_path.glob('runs/*/a/a.ipynb')) and time.time() < deadline: time.sleep(0.2)
    time.sleep(2)   # a's kernel is sleeping in its cell, b's is warming
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len(family) >= 3, family   # the fork server and at least two kernels
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, [p.cmdline()[:3] for p in alive]


def test_a_crashing_kernel_fails_its_step_only(tmp_path):
    write_nb(tmp_path / 'notebooks' / 'crash.ipynb', None, 'x = 1', 'import os, signal\nos.kill(os.getpid(), signal.SIGKILL)')
    write_nb(tmp_path / 'notebooks' / 'ok.ipynb', None, 'import time\ntime.sleep(2)',
             'import mlops_nb as mn\nmn.log_metric("ok", 1)')
    (tmp_path / 'mlops.yaml').write_text('name: crash\nsteps:\n  crash: {notebook: notebooks/crash.ipynb}\n'
                                         '  ok: {notebook: notebooks/ok.ipynb}\n')
    r = mlops(tmp_path, 'run', '--executor', 'warm', '--jobs', '2')
    assert r.returncode != 0
    assert "step 'crash' failed in notebooks/crash.ipynb, cell 3: DeadKernelError: the kernel died" in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr
    assert _step(tmp_path, 'crash')['status'] == 'failed' and _step(tmp_path, 'ok')['status'] == 'done'
    write_nb(tmp_path / 'notebooks' / 'crash.ipynb', None, 'x = 1')
    r = mlops(tmp_path, 'run', '--executor', 'warm')
    assert r.returncode == 0, r.stderr
    assert 'ok: cached' in r.stderr and 'crash: done' in r.stderr


def test_jobs_run_independent_steps_at_once_and_dependants_after(tmp_path):
    for s in ('left', 'right', 'join'):
        write_nb(tmp_path / 'notebooks' / f'{s}.ipynb', None,
                 'import time\nimport mlops_nb as mn\nstart = time.time()\ntime.sleep(2)',
                 'mn.log_metrics({"start": start, "end": time.time()})')
    (tmp_path / 'mlops.yaml').write_text('name: par\nsteps:\n  left: {notebook: notebooks/left.ipynb}\n'
                                         '  right: {notebook: notebooks/right.ipynb}\n'
                                         '  join: {notebook: notebooks/join.ipynb, needs: [left, right]}\n')
    r = mlops(tmp_path, 'run', '--jobs', '2')
    assert r.returncode == 0, r.stderr
    left, right, join = (_step(tmp_path, s)['metrics'] for s in ('left', 'right', 'join'))
    assert left['start'] < right['end'] and right['start'] < left['end'], (left, right)  # they overlapped
    assert join['start'] >= max(left['end'], right['end'])


SWEEP = """\
name: sweep
steps:
  prep:  {notebook: notebooks/prep.ipynb, outputs: [data/base.txt]}
  train: {notebook: notebooks/train.ipynb, needs: [prep]}
sweep: {metric: score, goal: max}
"""


def _sweep_project(root, pause=0.0):
    "A sweep whose score peaks at x=3 (not at an end of the grid), on top of a prepared base value."
    write_nb(root / 'notebooks' / 'prep.ipynb', None,
             'import mlops_nb as mn\nmn.output_path("data/base.txt").write_text("10")')
    write_nb(root / 'notebooks' / 'train.ipynb', f'x = 0\npause = {pause}',
             'import sys\npreloaded = "fractions" in sys.modules  # a warm kernel has this notebook\'s imports done',
             'import fractions, time\nimport mlops_nb as mn\nmn.log_params({"preloaded": preloaded})\ntime.sleep(pause)',
             'base = float(mn.input_path("data/base.txt").read_text())\nmn.log_metric("score", base - (x - 3) ** 2)')
    (root / 'mlops.yaml').write_text(SWEEP)


def _trial_runs(root, sweep_run_id):
    "The nested MLflow runs under the sweep's parent run."
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(uri)
    parent = json.loads((root / 'runs' / sweep_run_id / 'run.json').read_text())['mlflow_run_id']
    exp = client.get_experiment_by_name('sweep')
    return client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=100)


def _sweep_run_id(root):
    return next(json.loads(f.read_text())['run_id'] for f in sorted(root.glob('runs/*/run.json'), reverse=True)
                if json.loads(f.read_text()).get('kind') == 'sweep')


def test_dask_sweep_matches_the_local_executor(tmp_path):
    best = {}
    for executor in ('local', 'dask'):
        root = tmp_path / executor
        _sweep_project(root)
        # -X importtime in every process: the command imports Papermill (so jsonschema) once, its LocalCluster's
        # workers being its threads (worker processes would import it again), and builds no rfc3987-syntax grammar
        r = mlops(root, 'sweep', 'train', 'x=0,1,2,3,4,5,6,7', '-p', 'train.pause=0.1', '--executor', executor, '--jobs', '2',
                  env={**os.environ, 'PYTHONPROFILEIMPORTTIME': '1'} if executor == 'dask' else None)
        assert r.returncode == 0, r.stderr[-5000:]
        assert 'Worker process still alive' not in r.stderr  # workers stop their kernels when the run ends
        if executor == 'dask':
            modules = imported(r.stderr)
            assert modules.count('papermill.execute') == 1 and 'rfc3987_syntax.syntax_helpers' not in modules
        run = json.loads((root / 'runs' / _sweep_run_id(root) / 'run.json').read_text())
        best[executor] = run['best']
        assert len(run['trials']) == 8 and all(t['status'] == 'done' for t in run['trials'])
        trials = root.glob(f"runs/{run['run_id']}/train-*/step.json")
        warm = {json.loads(f.read_text())['logged_params']['preloaded'] for f in trials}
        assert warm == {str(executor == 'dask')}   # Dask workers keep warm kernel pools; the local executor starts cold ones
        runs = _trial_runs(root, run['run_id'])
        assert sorted(r.data.tags['mlflow.runName'] for r in runs) == [f'train x={i}' for i in range(8)]
        assert {r.info.status for r in runs} == {'FINISHED'}
    assert best['dask'] == best['local'] == {'params': {'x': 3}, 'metrics': {'score': 10.0}, 'status': 'done'}


TLS = "tls: {ca_file: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}\n"  # `dask_cluster(root)`'s, beside mlops.yaml


def test_dask_worker_killed_mid_sweep_still_finishes_every_trial(tmp_path):
    "Two `dask worker` processes on a TLS scheduler, the project on a disk they share; one is killed while trials run."
    import subprocess

    from conftest import BIN, clean_env
    _sweep_project(tmp_path, pause=3.0)
    assert mlops(tmp_path, 'run', 'prep').returncode == 0
    with dask_cluster(tmp_path, workers=2) as cluster:
        with open(tmp_path / 'mlops.yaml', 'a') as f: f.write(TLS)
        proc = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(tmp_path), 'sweep', 'train', 'x=0,1,2,3,4,5,6,7',
                                 '--executor', 'dask', '--scheduler', cluster['scheduler']],
                                stderr=subprocess.PIPE, text=True, env=clean_env())
        deadline = time.time() + 120
        while not list(tmp_path.glob('runs/*/train-00[12]/step.json')) and time.time() < deadline: time.sleep(0.2)
        time.sleep(1.0)  # the trials' notebooks are running now
        children = [c for n in cluster['workers'] for c in psutil.Process(n.pid).children()]
        workers = [c for c in children if 'spawn_main' in ' '.join(c.cmdline())]
        assert len(workers) == 2, children  # each nanny's worker process
        os.kill(workers[0].pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    run = json.loads((tmp_path / 'runs' / _sweep_run_id(tmp_path) / 'run.json').read_text())
    assert len(run['trials']) == 8 and run['best']['params'] == {'x': 3}
    runs = _trial_runs(tmp_path, run['run_id'])
    finished = sorted(r.data.tags['mlflow.runName'] for r in runs if r.info.status == 'FINISHED')
    assert finished == [f'train x={i}' for i in range(8)]  # each trial finished exactly once
    assert {r.info.status for r in runs} <= {'FINISHED', 'KILLED', 'RUNNING'}
    assert len(runs) > 8  # the killed attempt left a run, not marked finished


def test_dask_over_tls_and_plain_tcp_refused(tmp_path):
    "A real scheduler and worker speaking TLS with certificates; a tcp:// scheduler is refused unless allowed."
    _sweep_project(tmp_path)
    with dask_cluster(tmp_path) as cluster:
        address = cluster['scheduler']
        base = (tmp_path / 'mlops.yaml').read_text()
        (tmp_path / 'mlops.yaml').write_text(base + TLS)
        r = mlops(tmp_path, 'sweep', 'train', 'x=0,1', '--executor', 'dask', '--scheduler', address)
        assert r.returncode == 0 and "best of 2 trials: {'x': 1}" in r.stderr, r.stderr
        run = json.loads((tmp_path / 'runs' / _sweep_run_id(tmp_path) / 'run.json').read_text())
        assert [t['status'] for t in run['trials']] == ['done', 'done']
        r = mlops(tmp_path, 'run', '--executor', 'dask', '--scheduler', address.replace('tls://', 'tcp://'))
        assert r.returncode == 1 and 'plain TCP lets anyone who reaches the port read the data and run code' in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        (tmp_path / 'mlops.yaml').write_text(base)   # TLS address, no certificate: the scheduler turns us away
        r = mlops(tmp_path, 'run', '--force', '--executor', 'dask', '--scheduler', address)
        assert r.returncode == 1 and f'Dask scheduler {address} unreachable' in r.stderr, r.stderr


PARALLEL = """\
name: par
steps:
  a: {notebook: a.ipynb, outputs: [a.parquet]}
  b: {notebook: b.ipynb, outputs: [b.parquet]}
  c: {notebook: c.ipynb, needs: [a, b]}
"""


def test_no_two_threads_of_the_runner_import_at_once(tmp_path):
    """Steps a and b run at once and write tables (whylogs profiles them); the runner's threads import papermill,
    MLflow, whylogs and jupyter_client as the run goes: never two at once (see tests/import_spy.py), with warm kernels
    and with Dask's LocalCluster, whose workers are the runner's threads."""
    import subprocess
    import sys

    from conftest import clean_env
    for executor in ('warm', 'dask'):
        root = tmp_path / executor
        for s in 'ab':
            write_nb(root / f'{s}.ipynb', None, f'import pandas as pd\nimport mlops_nb as mn\n'
                     f'pd.DataFrame({{"x": range(100)}}).to_parquet("{s}.parquet")\nmn.log_metric("rows", 100)')
        write_nb(root / 'c.ipynb', None, 'import pandas as pd\nimport mlops_nb as mn\n'
                 'mn.log_metric("rows", len(pd.read_parquet("a.parquet")) + len(pd.read_parquet("b.parquet")))')
        (root / 'mlops.yaml').write_text(PARALLEL)
        out = tmp_path / f'{executor}.json'
        r = subprocess.run([sys.executable, str(Path(__file__).parent / 'import_spy.py'), str(out), '-C', str(root), 'run',
                            '--executor', executor, '--jobs', '2'], capture_output=True, text=True, env=clean_env())
        assert r.returncode == 0, r.stderr
        assert _step(root, 'c')['metrics'] == {'rows': 200.0}
        spied = json.loads(out.read_text())
        assert spied['imports'] > 10 and 'MainThread' in spied['threads'], spied  # the spy saw the run's imports
        assert spied['overlaps'] == [], (executor, spied)


AS_A_WORKER = """\
import json, sys
from pathlib import Path
import import_spy
import_spy.install()
from mlops_nb.config import load_config
from mlops_nb.cluster import close_worker, warm_worker, worker_step
from mlops_nb.plan import plan
from mlops_nb.step import StepContext, task_modules
root, parent = Path(sys.argv[1]), sys.argv[2]
cfg = load_config(root)
warm_worker(str(root), [], task_modules(cfg))  # as `client.run` does on a worker
try:
    p = plan(cfg, ['a'])[-1]                    # and its first task arrives at once
    status = worker_step(StepContext(root, 'w', root / 'runs' / 'w' / 'a', parent, {'run_id': 'w'}, {}), p).status
finally: close_worker(str(root))               # as the run's end does
print(json.dumps({'status': status, 'overlaps': import_spy.overlaps()}))
"""


def test_a_workers_first_task_waits_for_its_background_imports(tmp_path):
    """A Dask worker imports what tasks need (Papermill, MLflow) in a background thread while its first task starts,
    and the task imports MLflow too. CI once saw the task fail there: `ImportError: cannot import name '_get_store' from
    partially initialized module 'mlflow.tracking'`. The task now waits for the background imports."""
    import subprocess
    import sys

    from conftest import clean_env
    root = tmp_path / 'project'
    write_nb(root / 'a.ipynb', None, 'import mlops_nb as mn\nmn.log_metric("x", 1)')
    (root / 'mlops.yaml').write_text('name: worker\nsteps:\n  a: {notebook: a.ipynb}\n')
    assert mlops(root, 'run').returncode == 0  # an MLflow run to be the parent of the task's
    parent = json.loads(next(root.glob('runs/*/run.json')).read_text())['mlflow_run_id']
    r = subprocess.run([sys.executable, '-c', AS_A_WORKER, str(root), parent], capture_output=True, text=True,
                       env=clean_env({**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}), timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {'status': 'done', 'overlaps': []}
    assert _step(root, 'a', 'w')['status'] == 'done'
