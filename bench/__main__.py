"""Benchmarks: `python -m bench [--quick]` (or `make bench`); results go to reports/bench/results.{json,md}.

Each figure is the median of at least 3 samples, with its range, next to a baseline measured in the same run (this
machine's speed varies from run to run). The results record the commit, the machine and the date; a benchmark run
alone (`--only NAME`) at another commit than the rest is marked stale in the table, never mixed in silently."""
import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / 'tests'))
from conftest import THREE_STEPS, write_nb  # noqa: E402  (the same 3-step pipeline the tests use)


def _stats(samples) -> dict:
    xs = [float(x) for x in samples]
    return {'median': statistics.median(xs), 'min': min(xs), 'max': max(xs), 'samples': xs}


def _fmt(st: dict, unit: str = 's', digits: int = 1, scale: float = 1.0) -> str:
    "median [min–max] unit, ×scale."
    m, lo, hi = (scale * st[k] for k in ('median', 'min', 'max'))
    return f"{m:,.{digits}f} {unit} [{lo:,.{digits}f}–{hi:,.{digits}f}]"


def _ratio(a: dict, b: dict) -> float: return a['median'] / b['median']


def _timed(cmd, **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)
    return time.perf_counter() - t


def cache_hit(repeat: int) -> dict:
    "A full cache-hit rerun of a 3-step pipeline vs the bare interpreter start and (if installed) `dvc repro`."
    root = Path(tempfile.mkdtemp()) / 'proj'
    (root / 'raw').mkdir(parents=True)
    (root / 'raw' / 'values.txt').write_text('1\n2\n3\n')
    write_nb(root / 'notebooks' / 'ingest.ipynb', 'limit = 100', 'import mlops_nb as mn',
             'mn.output_path("data/values.csv").write_text(mn.input_path("raw/values.txt").read_text())')
    write_nb(root / 'notebooks' / 'prep.ipynb', 'scale = 1.0', 'import mlops_nb as mn',
             'mn.output_path("data/scaled.csv").write_text(mn.input_path("data/values.csv").read_text())')
    write_nb(root / 'notebooks' / 'train.ipynb', 'boost = 0\npause = 0.0', 'import mlops_nb as mn\nmn.log_metric("x", 1)')
    (root / 'mlops.yaml').write_text(THREE_STEPS)
    subprocess.run([BIN / 'mlops-nb', '-C', root, 'run'], check=True, capture_output=True)
    out = {'mlops_nb_s': _stats(_timed([BIN / 'mlops-nb', '-C', root, 'run']) for _ in range(repeat)),
           'python_start_s': _stats(_timed([sys.executable, '-c', 'pass']) for _ in range(repeat))}
    dvc = shutil.which('dvc', path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # optional: not a dependency
    if dvc:
        d = Path(tempfile.mkdtemp())
        subprocess.run(['git', 'init', '-q'], cwd=d, check=True)
        subprocess.run([dvc, 'init', '-q'], cwd=d, check=True)
        (d / 'dvc.yaml').write_text('stages:\n' + ''.join(
            f'  s{i}:\n    cmd: cp {a} {b}\n    deps: [{a}]\n    outs: [{b}]\n' for i, (a, b) in enumerate(
                [('in.txt', 'a.txt'), ('a.txt', 'b.txt'), ('b.txt', 'c.txt')])))
        (d / 'in.txt').write_text('x')
        subprocess.run([dvc, 'repro', '-q'], cwd=d, check=True, capture_output=True)
        out['dvc_repro_s'] = _stats(_timed([dvc, 'repro', '-q'], cwd=d) for _ in range(repeat))
    return out


_SCRIPT = """# Baseline: the weather notebooks' code as one Python process, with the same per-step MLflow bookkeeping.
import json, os, sys
from pathlib import Path
import mlflow
from IPython.display import display
import mlops_nb.api
from mlops_nb.config import load_config, write_json
from mlops_nb.tracking import Tracker
root = Path(sys.argv[1]).resolve()
cfg, steps = load_config(root), json.loads(Path(sys.argv[2]).read_text())
tracker = Tracker(cfg)
parent = tracker.start('script', {})
upstream = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else {}  # steps run before, for a loop
for i, (step, folder, code) in enumerate(steps):
    d = root / 'script' / f'{i}-{step}'
    d.mkdir(parents=True, exist_ok=True)
    rid = tracker.start(step, {}, parent)
    write_json(d / 'context.json', {'root': str(root), 'tracking_uri': tracker.uri, 'experiment': cfg.name, 'step': step,
                                    'run_id': 'script', 'mlflow_run_id': rid, 'upstream': dict(upstream), 'lineage': {}})
    os.environ['MLOPS_NB_STEP_DIR'] = str(d)
    mlops_nb.api.context.cache_clear()
    os.chdir(folder)
    sys.path.insert(0, folder)
    exec(compile(code, step + '.py', 'exec'), {'__name__': '__main__', 'display': display})
    read = lambda n: json.loads((d / n).read_text()) if (d / n).exists() else {}
    write_json(d / 'step.json', {'step': step, 'status': 'done', 'metrics': read('metrics.json'), 'models': read('models.json'),
                                 'mlflow_run_id': rid, 'outputs': {}})
    if mlflow.active_run(): mlflow.end_run()
    tracker.finish(rid, 'FINISHED', read('params.json'), read('metrics.json'))
    upstream[step] = str(d)
tracker.finish(parent, 'FINISHED')
"""


def _weather(d: Path) -> Path:
    "A fresh `mlops-nb init` of the weather example under `d`."
    root = d / 'weather'
    subprocess.run([BIN / 'mlops-nb', 'init', root, '--name', 'weather'], check=True, capture_output=True)
    return root


def _script_steps(root: Path, profile: str, steps=None, overrides=None) -> list:
    "[step, notebook folder, code] per step: code cells in order, the parameters cell replaced by resolved values."
    from mlops_nb.config import load_config
    from mlops_nb.params import cell_source, load_notebook, parameters_cell
    from mlops_nb.plan import plan
    cfg, out = load_config(root), []
    for p in plan(cfg, steps, profile, overrides):
        nb = load_notebook(p.notebook)
        pcell = parameters_cell(nb)
        code = [''.join(f'{k} = {v!r}\n' for k, v in p.params.items()) if cell_source(c) == pcell else cell_source(c)
                for c in nb['cells'] if c.get('cell_type') == 'code']
        out.append([p.step, str(p.notebook.parent), '\n'.join('\n'.join(ln for ln in c.splitlines()
                                                                      if not ln.lstrip().startswith(('%', '!'))) for c in code)])
    return out


def pipeline(repeat: int) -> dict:
    "The weather `pr` pipeline: one plain script vs mlops_nb with cold kernels and with the warm executor; cache-hit rerun."
    times = {'script': [], 'local': [], 'warm': [], 'cache_hit': []}
    for _ in range(repeat):
        d = Path(tempfile.mkdtemp())
        root = _weather(d / 's')
        spec = d / 'steps.json'
        spec.write_text(json.dumps(_script_steps(root, 'pr')))
        times['script'].append(_timed([sys.executable, '-c', _SCRIPT, root, spec]))
        for ex in ('local', 'warm'):
            root = _weather(d / ex)
            times[ex].append(_timed([BIN / 'mlops-nb', '-C', root, 'run', '--profile', 'pr', '--executor', ex]))
        times['cache_hit'].append(_timed([BIN / 'mlops-nb', '-C', root, 'run', '--profile', 'pr']))
        shutil.rmtree(d, ignore_errors=True)
    return {f'{k}_s': _stats(v) for k, v in times.items()}


def remote(repeat: int) -> dict:
    """The weather `pr` pipeline on Dask workers that cannot see the project (files shipped through a real MLflow
    server with PostgreSQL, `services.remote_cluster`) vs the local warm executor, alternating, in the same run."""
    from services import remote_cluster, remote_yaml
    times, shipping = {'warm': [], 'remote': []}, []
    hidden = Path(tempfile.mkdtemp())
    with remote_cluster(hidden) as cluster:
        for i in range(repeat + 1):  # the first round warms the workers' kernel pools and the server's store: not kept
            local, far = _weather(hidden / f'local-{i}'), remote_yaml(_weather(hidden / f'remote-{i}'), cluster)
            t_warm = _timed([BIN / 'mlops-nb', '-C', local, 'run', '--profile', 'pr', '--executor', 'warm'])
            t_remote = _timed([BIN / 'mlops-nb', '-C', far, 'run', '--profile', 'pr'])
            if i == 0: continue
            times['warm'].append(t_warm)
            times['remote'].append(t_remote)
            recs = [json.loads(f.read_text()) for f in far.glob('runs/*/*/step.json')]
            shipping.append(statistics.mean(r['shipping_seconds'] for r in recs))
    shutil.rmtree(hidden, ignore_errors=True)
    return {f'{k}_s': _stats(v) for k, v in times.items()} | {'shipping_s_per_step': _stats(shipping)}


GRID = ['n_estimators=20,30,40,50', 'max_depth=4,8']


def sweep(repeat: int) -> dict:
    "An 8-trial sweep of the weather train step: a plain loop vs mlops_nb warm with --jobs 1 and 2, and Dask 1 and 2 workers."
    d = Path(tempfile.mkdtemp())
    root = _weather(d)
    subprocess.run([BIN / 'mlops-nb', '-C', root, 'run', 'features', '--profile', 'pr'], check=True, capture_output=True)
    times, seed = {'loop': [], 'warm_jobs1': [], 'warm_jobs2': [], 'dask_workers1': [], 'dask_workers2': []}, 100
    for _ in range(repeat):
        trials = [{'n_estimators': n, 'max_depth': m} for n in (20, 30, 40, 50) for m in (4, 8)]
        spec = d / 'loop.json'
        seed += 1
        spec.write_text(json.dumps([s for t in trials for s in _script_steps(
            root, 'pr', ['train'], {**{f'train.{k}': str(v) for k, v in t.items()}, 'train.seed': str(seed)})[-1:]]))
        times['loop'].append(_timed([sys.executable, '-c', _SCRIPT, root, spec, _upstream(root, d / 'upstream.json')]))
        for name in ('warm_jobs1', 'warm_jobs2', 'dask_workers1', 'dask_workers2'):
            seed += 1
            times[name].append(_timed([BIN / 'mlops-nb', '-C', root, 'sweep', 'train', *GRID, '--profile', 'pr',
                                       '-p', f'train.seed={seed}', '--executor', name[:4], '--jobs', name[-1]]))
    shutil.rmtree(d, ignore_errors=True)
    return {f'{k}_s': _stats(v) for k, v in times.items()}


def _upstream(root: Path, out: Path) -> Path:
    "Write the latest successful folder of each step (what a loop's trials read upstream) to `out`."
    from mlops_nb.api import _latest_done  # what a notebook run by hand reads upstream: the same answer
    out.write_text(json.dumps(_latest_done(root)))
    return out


def tracking(n: int, repeat: int) -> dict:
    "Seconds per logged metric (`n` `log_metric` calls a sample) into SQLite vs a throwaway PostgreSQL on localhost."
    from mlflow.tracking import MlflowClient
    from services import pg_bin, postgres

    def per_metric(uri: str) -> float:
        c = MlflowClient(uri)
        run = c.create_run(c.create_experiment(f'bench-{time.time_ns()}', artifact_location=Path(tempfile.mkdtemp()).as_uri()))
        t = time.perf_counter()
        for i in range(n): c.log_metric(run.info.run_id, 'm', float(i), step=i)
        return (time.perf_counter() - t) / n
    sqlite = f"sqlite:///{Path(tempfile.mkdtemp()) / 'mlruns.db'}"
    out = {'sqlite_s_per_metric': _stats(per_metric(sqlite) for _ in range(repeat))}
    if pg_bin():
        with postgres() as uri: out['postgres_s_per_metric'] = _stats(per_metric(uri) for _ in range(repeat))
    return out


_PROFILE = ("import os, resource, sys, time; from mlops_nb.data import profile_file; t = time.perf_counter(); "
            "v, n, _ = profile_file(sys.argv[1], chunksize=100_000); "
            "print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def monitor_profile(rows: int, repeat: int) -> dict:
    "Chunked whylogs profiling of a generated CSV of `rows` and `5 * rows` rows: rows/s and peak RSS."
    out, rng, d = {}, np.random.default_rng(0), Path(tempfile.mkdtemp())
    for n in (rows, 5 * rows):
        f = d / f'{n}.csv'
        with open(f, 'w') as fh:
            for start in range(0, n, 500_000):
                m = min(500_000, n - start)
                pd.DataFrame({'precipitation': rng.exponential(3, m).round(1), 'temp_max': rng.normal(16, 7, m).round(1),
                              'temp_min': rng.normal(8, 5, m).round(1), 'wind': rng.gamma(3, 1, m).round(1),
                              'month': rng.integers(1, 13, m)}).to_csv(fh, index=False, header=start == 0)
        speed, rss = [], []
        for _ in range(repeat):
            got, secs, rss_kb = subprocess.run([sys.executable, '-c', _PROFILE, f], check=True, capture_output=True,
                                               text=True).stdout.split()
            assert int(got) == n
            speed.append(n / float(secs)); rss.append(int(rss_kb) / 1024)
        out[f'{n}_rows'] = {'rows_per_s': _stats(speed), 'peak_rss_mb': _stats(rss), 'file_mb': f.stat().st_size / 2**20}
        f.unlink()
    return out


def _wrk(url: str, body: str, connections: int, runs: int = 3, seconds: int = 5, cpu: str | None = None) -> dict:
    "Debian's `wrk` (a C load generator) POSTing `body` `runs` times, pinned to `cpu` if given: req/s, p50, p99."
    wrk = shutil.which('wrk')
    lua = Path(tempfile.mkdtemp()) / 'post.lua'
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    unit = {'us': 1e-3, 'ms': 1.0, 's': 1e3}
    out = []
    for _ in range(runs):
        cmd = [*(['taskset', '-c', cpu] if cpu else []), wrk, '-t', '1', '-c', str(connections), '-d', f'{seconds}s',
               '--latency', '-s', lua, url]
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        pct = {ln.split()[0]: ln.split()[1] for ln in text.splitlines() if ln.strip().startswith(('50%', '99%'))}
        ms = {k: float(v.rstrip('usm')) * unit[v.lstrip('0123456789.')] for k, v in pct.items()}
        errors = [ln for ln in text.splitlines() if 'Non-2xx' in ln or 'Socket errors' in ln]
        if errors: raise RuntimeError(f'{url}: {errors}')
        out.append({'rps': float(next(ln.split()[1] for ln in text.splitlines() if ln.startswith('Requests/sec'))),
                    'p50_ms': ms['50%'], 'p99_ms': ms['99%']})
    return {k: _stats(o[k] for o in out) for k in out[0]}


def _wait(url: str, proc, seconds=180):
    import requests
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok: return
        except requests.ConnectionError: time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f'{url} did not come up (exit code {proc.poll()})')


def _process_tree(pid: int) -> list[int]:
    kids = [int(c) for t in Path(f'/proc/{pid}/task').iterdir() for c in (t / 'children').read_text().split()]
    return [pid, *(q for k in kids for q in _process_tree(k))]


def _pin(pid: int, cpus: str):
    "Every thread of `pid` and its children on `cpus`."
    for q in _process_tree(pid): subprocess.run(['taskset', '-a', '-p', '-c', cpus, str(q)], check=True, capture_output=True)


_FLOOR = """# The floor: FastAPI and uvicorn with the same request model and the same ONNX session, nothing else.
import sys, numpy as np, uvicorn
from fastapi import FastAPI
from pydantic import ConfigDict, create_model
from mlops_nb.loader import onnx_session
sess, cols = onnx_session(sys.argv[1]), sys.argv[3].split(',')
inp = sess.get_inputs()[0].name
Record = create_model('Record', __config__=ConfigDict(extra='forbid', strict=True), **{c: (float, ...) for c in cols})
app = FastAPI()
@app.post('/predict')
async def predict(r: Record):
    rows = np.asarray([[getattr(r, c) for c in cols]], dtype=np.float32)
    return {'predictions': sess.run(['label'], {inp: rows})[0].tolist()}
@app.get('/health')
def health(): return {'status': 'ok'}
uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning', access_log=False)
"""

SERVERS = ('floor', 'mlops_nb_onnx', 'mlops_nb_sklearn', 'mlflow')


def serving(runs: int) -> dict:
    """One 100-tree iris forest served four ways: a minimal FastAPI app with the ONNX session (the floor), mlops-nb
    serve with ONNX (default) and with the sklearn model, and `mlflow models serve` (sklearn). wrk at 1 and 2
    connections, with the server and wrk pinned to different CPUs and unpinned; then 100-record batches."""
    import mlflow
    from conftest import register_iris
    from mlflow.tracking import MlflowClient
    root = Path(tempfile.mkdtemp())
    write_nb(root / 'a.ipynb', None, 'x = 1')
    (root / 'mlops.yaml').write_text('name: iris\nsteps:\n  a: {notebook: a.ipynb}\n'
                                     'serve: {trusted_types: [sklearn.tree._tree.Tree, numpy.dtype]}\n')
    uri = f"sqlite:///{root / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment('iris', artifact_location=(root / 'mlartifacts').as_uri())
    _, _, X = register_iris(root, MlflowClient(uri, uri), exp, 100, 'champion')  # also leaves root/model.onnx
    one, hundred = X.iloc[0].to_dict(), X.sample(100, replace=True, random_state=0).to_dict('records')
    env = {**os.environ, 'MLFLOW_TRACKING_URI': uri, 'PATH': f"{BIN}:{os.environ['PATH']}"}
    res = {}
    for name in SERVERS:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
        cmd = {'floor': [sys.executable, '-c', _FLOOR, root / 'model.onnx', str(port), ','.join(X.columns)],
               'mlops_nb_onnx': [BIN / 'mlops-nb', '-C', root, 'serve', 'iris', '--port', str(port)],
               'mlops_nb_sklearn': [BIN / 'mlops-nb', '-C', root, 'serve', 'iris', '--port', str(port), '--runtime', 'sklearn'],
               'mlflow': [BIN / 'mlflow', 'models', 'serve', '-m', 'models:/iris@champion', '--env-manager', 'local',
                          '-p', str(port), '--host', '127.0.0.1']}[name]
        url = f'http://127.0.0.1:{port}/' + ('invocations' if name == 'mlflow' else 'predict')
        single = json.dumps({'dataframe_records': [one]} if name == 'mlflow' else one)
        proc = subprocess.Popen(['taskset', '-c', '1', *map(str, cmd)], env=env, stdout=subprocess.DEVNULL,
                                stderr=open(root / f'{name}.log', 'w'))
        try:
            _wait(f'http://127.0.0.1:{port}/' + ('ping' if name == 'mlflow' else 'health'), proc)
            _wrk(url, single, 2, runs=1, seconds=1)  # warm-up, not counted
            res[name] = {f'pinned_{c}conn': _wrk(url, single, c, runs, cpu='0') for c in (1, 2)}
            _pin(proc.pid, '0,1')
            res[name] |= {f'unpinned_{c}conn': _wrk(url, single, c, runs) for c in (1, 2)}
            if name != 'floor':
                batch = json.dumps({'dataframe_records': hundred} if name == 'mlflow' else {'records': hundred})
                res[name]['batch100_1conn'] = _wrk(url, batch, 1, runs)
        finally:
            proc.terminate(); proc.wait(30)
    return res


def panel_status(repeat: int, n: int = 50, old_runs: int = 200) -> dict:
    """The JupyterLab panel's refresh on an `n`-step project that has run: the server's time to compute every step's
    state (staleness included), against reading and parsing the same step records (the I/O it cannot avoid); then
    with `old_runs` older runs in `runs/`, against the same refresh with one run (the latest records are all it needs)."""
    from mlops_nb.config import load_config
    from mlops_nb.lab import pipeline_state
    root = Path(tempfile.mkdtemp()) / 'fifty'
    steps = []
    for i in range(n):  # 10 layers of 5: each step reads one output of each step of the layer before
        needs = [f's{j}' for j in range(i - i % 5 - 5, i - i % 5)] if i >= 5 else []
        reads = ''.join(f'\nmn.input_path("data/s{j}.txt").read_text()' for j in range(i - i % 5 - 5, i - i % 5) if j >= 0)
        write_nb(root / 'notebooks' / f's{i}.ipynb', f'k: int = {i}',
                 f'import mlops_nb as mn{reads}\nmn.output_path("data/s{i}.txt").write_text(str(k))\nmn.log_metric("k", k)')
        steps.append(f"  s{i}: {{notebook: notebooks/s{i}.ipynb, needs: [{', '.join(needs)}], outputs: [data/s{i}.txt]}}")
    (root / 'mlops.yaml').write_text('name: fifty\nexecutor: warm\nsteps:\n' + '\n'.join(steps) + '\n')
    subprocess.run([BIN / 'mlops-nb', '-C', root, 'run'], check=True, capture_output=True)
    cfg = load_config(root)

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    records = lambda: [json.loads(f.read_text()) for f in (root / 'runs').glob('*/*/step.json')]
    state = pipeline_state(root, cfg)
    assert len(state['steps']) == n and {s['state'] for s in state['steps']} == {'done'}, state['steps']
    panel = [timed(lambda: pipeline_state(root, load_config(root))) for _ in range(repeat)]
    read = [timed(records) for _ in range(repeat)]
    run = next((root / 'runs').iterdir())
    for i in range(old_runs):  # a project's history: older runs of every step, sorting before the latest
        shutil.copytree(run, root / 'runs' / f'19990101T000000-{i:04d}')
    history = [timed(lambda: pipeline_state(root, load_config(root))) for _ in range(repeat)]
    return {'steps': n, 'panel_ms': _stats(1000 * x for x in panel), 'read_records_ms': _stats(1000 * x for x in read),
            'old_runs': old_runs, 'panel_history_ms': _stats(1000 * x for x in history)}


def _table(results: dict) -> list[str]:
    "The markdown table of whichever benchmarks `results` holds; a row measured at another commit says so."
    head, lines = results['commit'], ['| benchmark | measured: median [range] | baseline, same run: median [range] | ratio |',
                                      '|---|---|---|---|']

    def row(name, entry, measured, baseline='', ratio=''):
        stale = '' if entry.get('commit') == head else f" **(stale: measured at {entry.get('commit', '?')[:10]})**"
        lines.append(f'| {name}{stale} | {measured} | {baseline} | {ratio} |')
    if p := results.get('pipeline'):
        for ex, what in (('warm', 'warm executor'), ('local', 'cold kernels')):
            row(f'weather pr pipeline, {what}', p, _fmt(p[f'{ex}_s']), f"plain script {_fmt(p['script_s'])}",
                f"{_ratio(p[f'{ex}_s'], p['script_s']):.2f}×")
        row('weather pipeline cache-hit rerun', p, _fmt(p['cache_hit_s'], digits=2))
    if w := results.get('sweep'):
        row('8-trial sweep, warm, --jobs 1', w, _fmt(w['warm_jobs1_s']), f"plain loop {_fmt(w['loop_s'])}",
            f"{_ratio(w['warm_jobs1_s'], w['loop_s']):.2f}×")
        row('8-trial sweep, warm, --jobs 2', w, _fmt(w['warm_jobs2_s']), f"plain loop {_fmt(w['loop_s'])}",
            f"{_ratio(w['warm_jobs2_s'], w['loop_s']):.2f}×")
        for k in (1, 2):
            dask, warm = w[f'dask_workers{k}_s'], w[f'warm_jobs{k}_s']
            row(f'8-trial sweep, Dask LocalCluster, {k} worker{"s" * (k > 1)}', w, _fmt(dask), f"warm --jobs {k} {_fmt(warm)}",
                f"{_ratio(dask, warm):.2f}× (plain loop: {_ratio(dask, w['loop_s']):.2f}×)")
    if r := results.get('remote'):
        row('weather pr pipeline, Dask workers sharing no disk (files via MLflow server, PostgreSQL)', r, _fmt(r['remote_s']),
            f"warm executor, local {_fmt(r['warm_s'])}", f"{_ratio(r['remote_s'], r['warm_s']):.2f}×")
        row('  shipping overhead per step (uploads, queue, the result back)', r, _fmt(r['shipping_s_per_step'], digits=2))
    if (t := results.get('tracking')) and 'postgres_s_per_metric' in t:
        row('one logged metric, PostgreSQL', t, _fmt(t['postgres_s_per_metric'], 'ms', 2, 1000),
            f"SQLite {_fmt(t['sqlite_s_per_metric'], 'ms', 2, 1000)}",
            f"{_ratio(t['postgres_s_per_metric'], t['sqlite_s_per_metric']):.2f}×")
    if c := results.get('cache_hit'):
        row('cache-hit rerun, 3 steps', c, _fmt(c['mlops_nb_s'], digits=3), f"python start {_fmt(c['python_start_s'], digits=3)}",
            f"{_ratio(c['mlops_nb_s'], c['python_start_s']):.1f}×")
        if 'dvc_repro_s' in c:
            row('cache-hit rerun, 3 steps', c, _fmt(c['mlops_nb_s'], digits=3), f"dvc repro {_fmt(c['dvc_repro_s'], digits=3)}",
                f"{_ratio(c['mlops_nb_s'], c['dvc_repro_s']):.2f}×")
    if m := results.get('monitor_profile'):
        small, big = [k for k in m if k.endswith('_rows')]
        row(f'chunked profiling peak RSS, {big.replace("_", " ")}', m, _fmt(m[big]['peak_rss_mb'], 'MB', 0),
            f"{small.replace('_', ' ')} {_fmt(m[small]['peak_rss_mb'], 'MB', 0)}",
            f"{_ratio(m[big]['peak_rss_mb'], m[small]['peak_rss_mb']):.2f}×")
        for k in (small, big): row(f'chunked profiling speed, {k.replace("_", " ")}', m, _fmt(m[k]['rows_per_s'], 'rows/s', 0))
    if v := results.get('serving'):
        names = {'floor': 'minimal FastAPI + ONNX (floor)', 'mlops_nb_onnx': 'mlops-nb serve, ONNX',
                 'mlops_nb_sklearn': 'mlops-nb serve, sklearn', 'mlflow': 'mlflow models serve, sklearn'}
        for pin in ('pinned', 'unpinned'):
            for c in (1, 2):
                floor = v['floor'][f'{pin}_{c}conn']
                for name in SERVERS:
                    r = v[name][f'{pin}_{c}conn']
                    row(f"one record, {names[name]}, {c} conn{'s' * (c > 1)}, {pin}", v,
                        f"p99 {_fmt(r['p99_ms'], 'ms', 2)}, {r['rps']['median']:,.0f} req/s",
                        '' if name == 'floor' else f"floor p99 {_fmt(floor['p99_ms'], 'ms', 2)}",
                        '' if name == 'floor' else f"{_ratio(r['p99_ms'], floor['p99_ms']):.1f}× p99")
        for name in SERVERS[1:]:
            r = v[name]['batch100_1conn']
            row(f'100-record batches, {names[name]}, 1 conn, unpinned', v, _fmt(r['rps'], 'rows/s', 0, 100),
                f"mlflow models serve {_fmt(v['mlflow']['batch100_1conn']['rps'], 'rows/s', 0, 100)}" if name != 'mlflow' else '',
                f"{_ratio(r['rps'], v['mlflow']['batch100_1conn']['rps']):.1f}×" if name != 'mlflow' else '')
    if p := results.get('panel_status'):
        row(f"JupyterLab panel refresh (server time), {p['steps']} steps", p, _fmt(p['panel_ms'], 'ms', 1),
            f"reading the step records {_fmt(p['read_records_ms'], 'ms', 1)}",
            f"{_ratio(p['panel_ms'], p['read_records_ms']):.0f}×")
        if 'panel_history_ms' in p:
            row(f"JupyterLab panel refresh, {p['steps']} steps, {p['old_runs']} older runs in runs/", p,
                _fmt(p['panel_history_ms'], 'ms', 1), f"the same with one run {_fmt(p['panel_ms'], 'ms', 1)}",
                f"{_ratio(p['panel_history_ms'], p['panel_ms']):.2f}×")
    return lines


def _commit() -> str:
    "HEAD, with `+dirty` when tracked files other than the results differ from it."
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--', '.', ':!reports/bench'], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.strip()
    return head + ('+dirty' if dirty else '')


def _machine() -> dict:
    cpu = next((ln.split(':', 1)[1].strip() for ln in Path('/proc/cpuinfo').read_text().splitlines()
                if ln.startswith('model name')), platform.processor())
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    return {'cpus': os.cpu_count(), 'cpu_model': cpu, 'memory_gb': round(memory / 2**30),
            'python': sys.version.split()[0], 'platform': platform.platform()}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--quick', action='store_true', help='smaller sizes (still 3 samples a figure)')
    ap.add_argument('--out', type=Path, default=REPO / 'reports' / 'bench')
    ap.add_argument('--only', choices=['pipeline', 'sweep', 'remote', 'tracking', 'cache_hit', 'monitor_profile', 'serving',
                                       'panel_status'], help='run one benchmark; rows of other commits are marked stale')
    a = ap.parse_args()
    cases = {'pipeline': lambda: pipeline(3),
             'sweep': lambda: sweep(3),
             'remote': lambda: remote(3),
             'tracking': lambda: tracking(100 if a.quick else 300, 3),
             'cache_hit': lambda: cache_hit(5 if a.quick else 9),
             'monitor_profile': lambda: monitor_profile(200_000 if a.quick else 1_000_000, 3),
             'serving': lambda: serving(3),
             'panel_status': lambda: panel_status(9 if a.quick else 21)}
    if a.only in (None, 'serving') and not shutil.which('wrk'):  # said before the other benchmarks run, not after
        sys.exit('the serving benchmark needs wrk: apt-get install wrk')
    f = a.out / 'results.json'
    results = json.loads(f.read_text()) if a.only and f.exists() else {}
    commit = _commit()
    results |= {'commit': commit, 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'machine': _machine()}
    for k in [a.only] if a.only else cases:
        results[k] = cases[k]() | {'commit': commit}
    a.out.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(results, indent=1))
    m = results['machine']
    lines = [f"Measured at commit `{commit}` on {results['date']}: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GiB, "
             f"Python {m['python']}. Every figure: median [min–max] of ≥ 3 samples; `python -m bench` regenerates it all.", '',
             *_table(results)]
    (a.out / 'results.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
