"""Faults: a locked tracking store, a full disk, secrets in the environment, and SIGKILL during the report build."""
import hashlib
import json
import resource
import signal
import subprocess
import sys
import time

from conftest import BIN, clean_env, mlops, write_nb


def _state(root) -> dict:
    "Content hash of everything a finished run leaves: run folders, cache entries, object store."
    files = [*root.glob('runs/**/*'), *root.glob('.mlops_nb/cache/*'), *root.glob('.mlops_nb/objects/**/*')]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(files) if f.is_file()}


def _hold_lock(db, seconds: float) -> subprocess.Popen:
    "Another writer holding SQLite's exclusive lock on `db` for `seconds`."
    code = (f"import sqlite3, time; c = sqlite3.connect({str(db)!r}, isolation_level=None); c.execute('BEGIN EXCLUSIVE');"
            f" print('locked', flush=True); time.sleep({seconds}); c.execute('ROLLBACK')")
    p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'locked'
    return p


def test_locked_store_is_retried_then_the_run_finishes(three_step):
    assert mlops(three_step, 'run').returncode == 0
    holder = _hold_lock(three_step / 'mlruns.db', 8)  # longer than SQLite's own 5 s busy wait: our retries must kick in
    t = time.monotonic()
    r = mlops(three_step, 'run', '-p', 'boost=1')
    holder.wait()
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t > 7  # it waited for the other writer instead of failing


def test_locked_store_gives_up_with_a_clear_error_and_loses_nothing(three_step):
    assert mlops(three_step, 'run').returncode == 0
    before = _state(three_step)
    holder = _hold_lock(three_step / 'mlruns.db', 20)
    try: r = mlops(three_step, 'run', '-p', 'boost=2', env={**clean_env(), 'MLOPS_NB_LOCK_WAIT': '3'})
    finally: holder.kill()
    assert r.returncode == 1
    assert 'is locked by another writer; gave up after' in r.stderr and 'MLOPS_NB_LOCK_WAIT' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr
    assert _state(three_step) == before
    assert mlops(three_step, 'run', '-p', 'boost=2').returncode == 0


def _small_disk(limit: int):
    "A process whose files cannot grow past `limit` bytes (EFBIG, like a full disk), children included."
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def _run_limited(root, limit: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / 'mlops-nb'), '-C', str(root), 'run'], capture_output=True, text=True,
                          env=clean_env(), preexec_fn=_small_disk(limit))


def test_full_disk_is_a_clear_error_and_the_next_run_finishes(three_step):
    assert mlops(three_step, 'run').returncode == 0
    before = _state(three_step)
    write_nb(three_step / 'notebooks' / 'train.ipynb', 'boost = 0\npause = 0.0',
             'import mlops_nb as mn\nblob = mn.output_path("data/model.bin")\nblob.write_bytes(b"x" * 3_000_000)',
             'mn.log_metric("size", blob.stat().st_size)')
    # the notebook's own write fails: that step fails, naming the cell
    r = _run_limited(three_step, 2_000_000)
    assert r.returncode == 1
    assert "step 'train' failed in notebooks/train.ipynb, cell 3: OSError: [Errno 27] File too large" in r.stderr, r.stderr
    assert _state(three_step).items() >= before.items()  # nothing that existed changed
    # the tracking store cannot grow: one line, no traceback
    r = _run_limited(three_step, (three_step / 'mlruns.db').stat().st_size)
    assert r.returncode == 1
    assert 'Error: write failed (disk full?): ' in r.stderr and 'unchanged (free space, then run again)' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr
    assert _state(three_step).items() >= before.items()
    r = mlops(three_step, 'run')
    assert r.returncode == 0, r.stderr
    assert 'ingest: cached' in r.stderr and 'train: done' in r.stderr


def test_secrets_never_reach_notebooks_mlflow_or_reports(three_step):
    secret = 'hunter2-very-secret-value'
    write_nb(three_step / 'notebooks' / 'train.ipynb', 'boost = 0\npause = 0.0',
             'import os\nimport mlops_nb as mn\ntoken = os.environ["SERVICE_API_TOKEN"]\nprint("using", token)',
             'mn.log_params({"endpoint": f"https://api.example.com/?key={token}"})\nmn.log_metric("total", 1)\ntoken')
    r = mlops(three_step, 'run', env={**clean_env(), 'SERVICE_API_TOKEN': secret})
    assert r.returncode == 0, r.stderr
    assert mlops(three_step, 'report', env={**clean_env(), 'SERVICE_API_TOKEN': secret}).returncode == 0
    executed = next(three_step.glob('runs/*/train/train.ipynb')).read_text()
    assert secret not in executed and 'using [redacted]' in executed
    from mlflow.tracking import MlflowClient
    c = MlflowClient(f"sqlite:///{three_step / 'mlruns.db'}")
    run = c.get_run(json.loads(next(three_step.glob('runs/*/train/step.json')).read_text())['mlflow_run_id'])
    assert run.data.params['endpoint'] == 'https://api.example.com/?key=[redacted]'
    for f in (three_step / 'reports').rglob('*'):
        if f.is_file() and f.suffix in ('.html', '.md', '.json', '.ipynb'): assert secret not in f.read_text(), f
    # and a failure message quoting the secret does not print it either
    write_nb(three_step / 'notebooks' / 'train.ipynb', 'boost = 0\npause = 0.0',
             'import os\nraise ValueError("bad token " + os.environ["SERVICE_API_TOKEN"])')
    r = mlops(three_step, 'run', env={**clean_env(), 'SERVICE_API_TOKEN': secret})
    assert r.returncode == 1 and 'ValueError: bad token [redacted]' in r.stderr and secret not in r.stderr, r.stderr


BLOCK_AT_WRITE = """
import os, pathlib, sys, time
from mlops_nb.cli import main
marker, nth, calls, fsync = pathlib.Path(sys.argv[1]), int(sys.argv[2]), [0], os.fsync
def blocking_fsync(fd):  # write_text: temp file written and synced, not yet renamed into place
    fsync(fd)
    calls[0] += 1
    if calls[0] == nth:
        marker.write_text('in the middle of a page write')
        time.sleep(3600)
os.fsync = blocking_fsync
sys.argv = ['mlops-nb', '-C', sys.argv[3], 'report']
main()
"""


def test_sigkill_during_the_report_build_leaves_no_broken_page(three_step, tmp_path):
    "Deterministic kills: the report builder stopped inside a page write (the 1st, 3rd, 5th of what is left), then killed."
    assert mlops(three_step, 'run').returncode == 0
    assert mlops(three_step, 'run', '-p', 'boost=1').returncode == 0
    for nth in (1, 3, 5):
        marker = tmp_path / f'blocked-{nth}'
        p = subprocess.Popen([sys.executable, '-c', BLOCK_AT_WRITE, str(marker), str(nth), str(three_step)],
                             env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(marker)
        p.send_signal(signal.SIGKILL)
        p.wait()
        for f in (three_step / 'reports').rglob('*.html'):  # every page there is whole (written atomically)
            assert f.read_text().rstrip().endswith('</html>'), f
        assert list((three_step / 'reports').rglob('.*.tmp'))  # the write that was killed left only its temp file
    r = mlops(three_step, 'report')
    assert r.returncode == 0, r.stderr
    assert len(list((three_step / 'reports').rglob('*.html'))) >= 4


REGISTER = """\
name: tiny
steps:
  train:    {notebook: notebooks/train.ipynb}
  register: {notebook: notebooks/register.ipynb, needs: [train]}
"""


def test_sigkill_at_any_moment_never_duplicates_a_version_or_fakes_a_done_step(tmp_path):
    "Kill the runner (and its kernels) at many moments of a run, including MLflow writes; then finish."
    import os

    from mlflow.tracking import MlflowClient
    write_nb(tmp_path / 'notebooks' / 'train.ipynb', None,
             'import numpy as np\nfrom sklearn.dummy import DummyClassifier\nimport mlops_nb as mn',
             'X = np.array([[0.0], [1.0]])\nmn.log_model(DummyClassifier().fit(X, [0, 1]), input_example=X)')
    write_nb(tmp_path / 'notebooks' / 'register.ipynb', None,
             'import mlops_nb as mn\nv = mn.register_model("tiny", metrics_from=None)\nmn.log_metric("version", int(v.version))')
    (tmp_path / 'mlops.yaml').write_text(REGISTER)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}", f"sqlite:///{tmp_path / 'mlruns.db'}")
    kills = 0
    for delay in (1.5, 3.0, 4.5, 6.0, 7.5, 9.0):
        p = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(tmp_path), 'run'], env=clean_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try: p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            kills += 1
        for entry in tmp_path.glob('.mlops_nb/cache/*.json'):  # a cached step finished everything, MLflow included
            e = json.loads(entry.read_text())
            assert client.get_run(e['mlflow_run_id']).info.status == 'FINISHED', e['step']
            assert json.loads((tmp_path / 'runs' / e['run_id'] / e['step'] / 'step.json').read_text())['status'] == 'done'
    assert kills >= 3
    r = mlops(tmp_path, 'run')
    assert r.returncode == 0, r.stderr
    versions = client.search_model_versions("name = 'tiny'")
    assert len(versions) == 1, [(v.version, v.source) for v in versions]  # one model, one version, however often killed
    assert 'nothing to run' in mlops(tmp_path, 'run').stderr  # every step finished and is cached


def _wait_for(path, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f'{path} never appeared'
        time.sleep(0.05)


def test_sigkill_during_mlflow_writes_of_the_runner_and_of_a_kernel(tmp_path):
    "Deterministic kills: the runner blocked in its MLflow write (store held by another writer), a kernel registering."
    import os

    from mlflow.tracking import MlflowClient
    write_nb(tmp_path / 'notebooks' / 'train.ipynb', None,
             'import numpy as np\nfrom sklearn.dummy import DummyClassifier\nimport mlops_nb as mn',
             'X = np.array([[0.0], [1.0]])\nmn.log_model(DummyClassifier().fit(X, [0, 1]), input_example=X)',
             'mn.output_path("markers/train").write_text("x")')
    write_nb(tmp_path / 'notebooks' / 'register.ipynb', None,
             'import mlops_nb as mn\nmn.output_path("markers/register").write_text("x")',
             'v = mn.register_model("tiny", metrics_from=None)\nmn.log_metric("version", int(v.version))')
    (tmp_path / 'mlops.yaml').write_text(REGISTER)
    db = tmp_path / 'mlruns.db'

    def start():
        return subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(tmp_path), 'run'], env=clean_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # 1. train's notebook is done; the runner is inside its MLflow write, waiting for the store another writer holds
    p = start()
    _wait_for(tmp_path / 'markers' / 'train')
    holder = _hold_lock(db, 30)
    time.sleep(2.0)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    holder.kill()
    holder.wait()
    rec = json.loads(next(tmp_path.glob('runs/*/train/step.json')).read_text())
    assert rec['status'] == 'running' and not list(tmp_path.glob('.mlops_nb/cache/*.json'))  # not done, not cached
    client = MlflowClient(f'sqlite:///{db}', f'sqlite:///{db}')
    assert client.get_run(rec['mlflow_run_id']).info.status != 'FINISHED'
    assert 'interrupted' in mlops(tmp_path, 'status').stdout
    # 2. train finishes on the rerun; the register kernel is killed while it registers the version
    (tmp_path / 'markers' / 'train').unlink()
    p = start()
    _wait_for(tmp_path / 'markers' / 'register')
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert json.loads(next(tmp_path.glob('runs/*/register/step.json')).read_text())['status'] == 'running'
    # 3. the next run finishes: one model, one version, both steps done and cached
    r = mlops(tmp_path, 'run')
    assert r.returncode == 0, r.stderr
    assert 'train: cached' in r.stderr and 'register: done' in r.stderr
    assert len(client.search_model_versions("name = 'tiny'")) == 1
    assert 'nothing to run' in mlops(tmp_path, 'run').stderr
