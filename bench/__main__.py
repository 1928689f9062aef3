"""Benchmarks: `python -m bench [--quick]` (or `make bench`). Each figure is a ratio against a baseline measured in
the same run, since this machine's speed varies; results go to reports/bench/results.{json,md}."""
import argparse
import json
import os
import shutil
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
    hit = statistics.median(_timed([BIN / 'mlops-nb', '-C', root, 'run']) for _ in range(repeat))
    python = statistics.median(_timed([sys.executable, '-c', 'pass']) for _ in range(repeat))
    out = {'mlops_nb_cache_hit_s': hit, 'python_start_s': python, 'ratio_vs_python_start': hit / python}
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
        out['dvc_repro_s'] = statistics.median(_timed([dvc, 'repro', '-q'], cwd=d) for _ in range(repeat))
        out['ratio_vs_dvc_repro'] = hit / out['dvc_repro_s']
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
    from mlops_nb.runner import plan
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
    med = {k: statistics.median(v) for k, v in times.items()}
    return {**{f'{k}_s': v for k, v in med.items()}, 'all_s': times,
            'local_vs_script': med['local'] / med['script'], 'warm_vs_script': med['warm'] / med['script']}


GRID = ['n_estimators=20,30,40,50', 'max_depth=4,8']


def sweep(repeat: int) -> dict:
    "An 8-trial sweep of the weather train step: a plain loop vs mlops_nb warm with --jobs 1 and 2, and Dask 1 vs 2 workers."
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
    med = {k: statistics.median(v) for k, v in times.items()}
    return {**{f'{k}_s': v for k, v in med.items()}, 'all_s': times, 'warm_jobs1_vs_loop': med['warm_jobs1'] / med['loop'],
            'jobs2_speedup': med['warm_jobs1'] / med['warm_jobs2'],
            'dask_2_workers_speedup': med['dask_workers1'] / med['dask_workers2']}


def _upstream(root: Path, out: Path) -> Path:
    "Write the latest successful folder of each step (what a loop's trials read upstream) to `out`."
    from mlops_nb.api import _latest_done  # what a notebook run by hand reads upstream: the same answer
    out.write_text(json.dumps(_latest_done(root)))
    return out


def tracking(n: int) -> dict:
    "Seconds per logged metric (one `log_metric` call each) into SQLite vs a throwaway PostgreSQL on localhost."
    from mlflow.tracking import MlflowClient
    from services import pg_bin, postgres

    def per_metric(uri: str) -> float:
        c = MlflowClient(uri)
        run = c.create_run(c.create_experiment(f'bench-{time.time_ns()}', artifact_location=Path(tempfile.mkdtemp()).as_uri()))
        t = time.perf_counter()
        for i in range(n): c.log_metric(run.info.run_id, 'm', float(i), step=i)
        return (time.perf_counter() - t) / n
    out = {'sqlite_s_per_metric': per_metric(f"sqlite:///{Path(tempfile.mkdtemp()) / 'mlruns.db'}")}
    if pg_bin():
        with postgres() as uri: out['postgres_s_per_metric'] = per_metric(uri)
        out['postgres_vs_sqlite'] = out['postgres_s_per_metric'] / out['sqlite_s_per_metric']
    return out


_PROFILE = ("import os, resource, sys, time; from mlops_nb.data import profile_file; t = time.perf_counter(); "
            "v, n, _ = profile_file(sys.argv[1], chunksize=100_000); "
            "print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def monitor_profile(rows: int) -> dict:
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
        got, secs, rss_kb = subprocess.run([sys.executable, '-c', _PROFILE, f], check=True, capture_output=True,
                                           text=True).stdout.split()
        assert int(got) == n
        out[f'{n}_rows'] = {'rows_per_s': n / float(secs), 'peak_rss_mb': int(rss_kb) / 1024, 'file_mb': f.stat().st_size / 2**20}
        f.unlink()
    small, big = out[f'{rows}_rows'], out[f'{5 * rows}_rows']
    out['rss_ratio_5x'] = big['peak_rss_mb'] / small['peak_rss_mb']
    return out


def _load(url: str, body, n: int, threads: int = 4, headers=None) -> dict:
    "Send `n` POSTs with `threads` keep-alive clients; throughput and latency percentiles (bounded, localhost)."
    from concurrent.futures import ThreadPoolExecutor

    import requests

    def worker(k):
        s, lat = requests.Session(), []
        for _ in range(k):
            t = time.perf_counter()
            r = s.post(url, data=body, headers={'Content-Type': 'application/json', **(headers or {})}, timeout=30)
            r.raise_for_status()
            lat.append(time.perf_counter() - t)
        return lat
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool: lats = [x for part in pool.map(worker, [n // threads] * threads) for x in part]
    wall = time.perf_counter() - t
    ms = 1000 * np.asarray(lats)
    return {'rps': len(lats) / wall, 'p50_ms': float(np.percentile(ms, 50)), 'p99_ms': float(np.percentile(ms, 99))}


def _wrk(url: str, body: str, connections: int, runs: int = 3, seconds: int = 5) -> dict | None:
    "Debian's `wrk` (a C load generator) POSTing `body`: median over `runs` of req/s and p50/p99, or None without wrk."
    wrk = shutil.which('wrk')
    if not wrk: return None
    lua = Path(tempfile.mkdtemp()) / 'post.lua'
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    unit = {'us': 1e-3, 'ms': 1.0, 's': 1e3}
    out = []
    for _ in range(runs):
        text = subprocess.run([wrk, '-t', '1', '-c', str(connections), '-d', f'{seconds}s', '--latency', '-s', lua, url],
                              check=True, capture_output=True, text=True).stdout
        pct = {ln.split()[0]: ln.split()[1] for ln in text.splitlines() if ln.strip().startswith(('50%', '99%'))}
        ms = {k: float(v.rstrip('usm')) * unit[v.lstrip('0123456789.')] for k, v in pct.items()}
        rps = float(next(ln.split()[1] for ln in text.splitlines() if ln.startswith('Requests/sec')))
        out.append({'rps': rps, 'p50_ms': ms['50%'], 'p99_ms': ms['99%']})
    return {k: statistics.median(o[k] for o in out) for k in out[0]} | {'runs': out}


def _wait(url: str, proc, seconds=180):
    import requests
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok: return
        except requests.ConnectionError: time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f'{url} did not come up (exit code {proc.poll()})')


def serving(n: int) -> dict:
    "mlops-nb serve (ONNX) vs `mlflow models serve --env-manager local`, one 100-tree forest, 1 and 100 rows a request."
    import socket

    import mlflow
    from mlflow.tracking import MlflowClient
    from test_serve import _register
    root = Path(tempfile.mkdtemp())
    write_nb(root / 'a.ipynb', None, 'x = 1')
    (root / 'mlops.yaml').write_text('name: iris\nsteps:\n  a: {notebook: a.ipynb}\n')
    uri = f"sqlite:///{root / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment('iris', artifact_location=(root / 'mlartifacts').as_uri())
    _, _, X = _register(root, MlflowClient(uri, uri), exp, 100, 'champion')
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0)); ports.append(s.getsockname()[1])
    ours = subprocess.Popen([BIN / 'mlops-nb', '-C', root, 'serve', 'iris', '--port', str(ports[0])], stderr=subprocess.DEVNULL)
    theirs = subprocess.Popen([BIN / 'mlflow', 'models', 'serve', '-m', 'models:/iris@champion', '--env-manager', 'local',
                               '-p', str(ports[1]), '--host', '127.0.0.1'],
                              env={**os.environ, 'MLFLOW_TRACKING_URI': uri, 'PATH': f"{BIN}:{os.environ['PATH']}"},
                              stdout=subprocess.DEVNULL, stderr=open(root / 'mlflow-serve.log', 'w'))
    try:
        _wait(f'http://127.0.0.1:{ports[0]}/health', ours)
        _wait(f'http://127.0.0.1:{ports[1]}/health', theirs)
        one, hundred = X.iloc[0].to_dict(), X.sample(100, replace=True, random_state=0).to_dict('records')
        res = {
            'mlops_nb_single_wrk_1conn': _wrk(f'http://127.0.0.1:{ports[0]}/predict', json.dumps(one), 1),
            'mlops_nb_single_wrk_2conn': _wrk(f'http://127.0.0.1:{ports[0]}/predict', json.dumps(one), 2),
            'mlflow_single_wrk_1conn': _wrk(f'http://127.0.0.1:{ports[1]}/invocations',
                                            json.dumps({'dataframe_records': [one]}), 1),
            'mlops_nb_single': _load(f'http://127.0.0.1:{ports[0]}/predict', json.dumps(one), n),
            'mlflow_single': _load(f'http://127.0.0.1:{ports[1]}/invocations', json.dumps({'dataframe_records': [one]}), n // 4),
            'mlops_nb_batch100': _load(f'http://127.0.0.1:{ports[0]}/predict', json.dumps({'records': hundred}), n // 4),
            'mlflow_batch100': _load(f'http://127.0.0.1:{ports[1]}/invocations',
                                     json.dumps({'dataframe_records': hundred}), n // 8),
        }
    finally:
        ours.terminate(); theirs.terminate()
    res['single_rps_ratio'] = res['mlops_nb_single']['rps'] / res['mlflow_single']['rps']
    if res['mlflow_single_wrk_1conn']:
        res['single_rps_ratio_wrk_1conn'] = res['mlops_nb_single_wrk_1conn']['rps'] / res['mlflow_single_wrk_1conn']['rps']
    res['batch_rows_ratio'] = res['mlops_nb_batch100']['rps'] / res['mlflow_batch100']['rps']
    return res


def panel_status(repeat: int, n: int = 50) -> dict:
    """The JupyterLab panel's refresh on an `n`-step project that has run: the server's time to compute every step's
    state (staleness included), against reading and parsing the same step records (the I/O it cannot avoid)."""
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
    panel_s, read_s = statistics.median(panel), statistics.median(read)
    return {'steps': n, 'samples': repeat, 'panel_ms': 1000 * panel_s, 'panel_max_ms': 1000 * max(panel),
            'read_records_ms': 1000 * read_s, 'ratio_vs_read': panel_s / read_s}


def _table(results: dict) -> list[str]:
    "The markdown table of whichever benchmarks `results` holds."
    lines = ['| benchmark | measured | baseline (same run) | ratio |', '|---|---|---|---|']
    if p := results.get('pipeline'):
        lines += [f"| weather pr pipeline, warm executor | {p['warm_s']:.1f} s | plain script {p['script_s']:.1f} s | "
                  f"{p['warm_vs_script']:.2f}× |",
                  f"| weather pr pipeline, cold kernels | {p['local_s']:.1f} s | plain script {p['script_s']:.1f} s | "
                  f"{p['local_vs_script']:.2f}× |",
                  f"| weather pipeline cache-hit rerun | {p['cache_hit_s']:.2f} s | | |"]
    if w := results.get('sweep'):
        lines += [f"| 8-trial sweep, warm, --jobs 1 | {w['warm_jobs1_s']:.1f} s | plain loop {w['loop_s']:.1f} s | "
                  f"{w['warm_jobs1_vs_loop']:.2f}× |",
                  f"| 8-trial sweep, warm, --jobs 2 | {w['warm_jobs2_s']:.1f} s | --jobs 1 {w['warm_jobs1_s']:.1f} s | "
                  f"{w['jobs2_speedup']:.2f}× faster |",
                  f"| 8-trial sweep, Dask 2 workers | {w['dask_workers2_s']:.1f} s | 1 worker {w['dask_workers1_s']:.1f} s | "
                  f"{w['dask_2_workers_speedup']:.2f}× faster |"]
    if (t := results.get('tracking')) and 'postgres_s_per_metric' in t:
        lines.append(f"| one logged metric, PostgreSQL | {1000 * t['postgres_s_per_metric']:.1f} ms | "
                     f"SQLite {1000 * t['sqlite_s_per_metric']:.1f} ms | {t['postgres_vs_sqlite']:.2f}× |")
    if c := results.get('cache_hit'):
        lines.append(f"| cache-hit rerun, 3 steps | {c['mlops_nb_cache_hit_s']:.3f} s | python start {c['python_start_s']:.3f} s"
                     f" | {c['ratio_vs_python_start']:.1f}× |")
        if 'dvc_repro_s' in c:
            lines.append(f"| cache-hit rerun, 3 steps | {c['mlops_nb_cache_hit_s']:.3f} s | dvc repro {c['dvc_repro_s']:.3f} s | "
                         f"{c['ratio_vs_dvc_repro']:.2f}× |")
    if m := results.get('monitor_profile'):
        sizes = [k for k in m if k.endswith('_rows')]
        lines.append(f"| chunked profiling peak RSS, {sizes[1]} vs {sizes[0]} | {m[sizes[1]]['peak_rss_mb']:.0f} MB | "
                     f"{m[sizes[0]]['peak_rss_mb']:.0f} MB | {m['rss_ratio_5x']:.2f}× |")
        lines += [f"| chunked profiling speed, {k} | {m[k]['rows_per_s']:,.0f} rows/s | | |" for k in sizes]
    if v := results.get('serving'):
        s1, m1 = v['mlops_nb_single'], v['mlflow_single']
        lines.append(f"| serve single record | {s1['rps']:,.0f} req/s, p99 {s1['p99_ms']:.1f} ms | mlflow models serve "
                     f"{m1['rps']:,.0f} req/s, p99 {m1['p99_ms']:.1f} ms | {v['single_rps_ratio']:.1f}× |")
        if (wk := v.get('mlops_nb_single_wrk_1conn')) and (wm := v.get('mlflow_single_wrk_1conn')):
            lines.append(f"| serve single record, wrk, 1 connection, median of 3 runs | {wk['rps']:,.0f} req/s, "
                         f"p50 {wk['p50_ms']:.2f} ms, p99 {wk['p99_ms']:.2f} ms | mlflow models serve {wm['rps']:,.0f} req/s, "
                         f"p99 {wm['p99_ms']:.1f} ms | {v['single_rps_ratio_wrk_1conn']:.1f}× |")
        if wk := v.get('mlops_nb_single_wrk_2conn'):
            lines.append(f"| serve single record, wrk, 2 connections, median of 3 runs | {wk['rps']:,.0f} req/s, "
                         f"p50 {wk['p50_ms']:.2f} ms, p99 {wk['p99_ms']:.2f} ms | | |")
        lines.append(f"| serve 100-record batches | {100 * v['mlops_nb_batch100']['rps']:,.0f} rows/s | "
                     f"mlflow models serve {100 * v['mlflow_batch100']['rps']:,.0f} rows/s | {v['batch_rows_ratio']:.1f}× |")
    if p := results.get('panel_status'):
        lines.append(f"| JupyterLab panel refresh (server time), {p['steps']} steps, median of {p['samples']} | "
                     f"{p['panel_ms']:.1f} ms (max {p['panel_max_ms']:.1f} ms) | reading the step records "
                     f"{p['read_records_ms']:.1f} ms | {p['ratio_vs_read']:.1f}× |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--quick', action='store_true', help='smaller sizes, fewer repeats')
    ap.add_argument('--out', type=Path, default=REPO / 'reports' / 'bench')
    ap.add_argument('--only', choices=['pipeline', 'sweep', 'tracking', 'cache_hit', 'monitor_profile', 'serving',
                                       'panel_status'],
                    help='run one benchmark and update its entry in the results')
    a = ap.parse_args()
    cases = {'pipeline': lambda: pipeline(1 if a.quick else 3),
             'sweep': lambda: sweep(1),
             'tracking': lambda: tracking(100 if a.quick else 300),
             'cache_hit': lambda: cache_hit(3 if a.quick else 7),
             'monitor_profile': lambda: monitor_profile(200_000 if a.quick else 1_000_000),
             'serving': lambda: serving(400 if a.quick else 2000),
             'panel_status': lambda: panel_status(5 if a.quick else 21)}
    f = a.out / 'results.json'
    results = json.loads(f.read_text()) if a.only and f.exists() else {}
    results['machine'] = {'cpus': os.cpu_count(), 'python': sys.version.split()[0]}
    for k in [a.only] if a.only else cases: results[k] = cases[k]()
    a.out.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(results, indent=1))
    lines = _table(results)
    (a.out / 'results.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
