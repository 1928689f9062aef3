"""Shared helpers: throwaway projects with real notebooks, and the real `mlops-nb` command."""
import contextlib
import io
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
import requests

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent

# Test files, slowest first: seconds per file in `CI=true bash .ci/run` (pytest --junitxml, 2026-11-30, commands
# forked by tests/cliserver.py) were 289 docs (the site built under act), 248 act GitOps, 177 remote workers, 142
# faults, 104 executors, ... down to 3 for the property tests. .ci/checks hands files to xdist's two workers in this
# order (--dist loadfile --no-loadscope-reorder; xdist's own order is by test count, which ran the two-test files of
# several minutes last): the long files start first and the workers finish together. A file not listed runs after these.
SLOWEST_FIRST = ['test_docs.py', 'test_gitops_act.py', 'test_remote_workers.py', 'reliability/test_faults.py',
                 'test_executors.py', 'test_workflows.py', 'test_weather.py', 'test_lab.py', 'test_container.py',
                 'test_runner.py', 'test_report.py', 'test_operate.py', 'test_serve.py', 'test_gitops.py', 'test_trust.py',
                 'test_scale_out.py', 'test_registry.py', 'test_jupyter.py', 'reliability/test_security.py',
                 'reliability/test_bad_inputs.py', 'test_export_sync.py', 'test_config_cli.py',
                 'reliability/test_properties.py']


def pytest_collection_modifyitems(items):
    rank = {f: i for i, f in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(os.path.relpath(item.path, REPO / 'tests')).as_posix(), len(rank)))


def require_service(available: bool, what: str):
    """Skip a test whose service is missing on a developer's machine; under CI=true (as `.ci/run` and GitHub set it)
    fail instead, naming what to install: CI never passes without having run every test."""
    if available: return
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(f"{what} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(what)


@contextlib.contextmanager
def chromium(profile_dir: Path, width: int = 1280, height: int = 1000):
    "Headless Debian chromium driven by selenium (browser console logged); the test fails under CI=true without it."
    import shutil
    require_service(bool(shutil.which('chromium') and shutil.which('chromedriver')),
                    'chromium/chromedriver not installed (Debian: apt-get install chromium chromium-driver; .ci/run does it)')
    from selenium import webdriver
    opts = webdriver.ChromeOptions()
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic',
              f'--user-data-dir={profile_dir}', f'--window-size={width},{height}'):
        opts.add_argument(a)
    opts.binary_location = shutil.which('chromium')
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which('chromedriver')))
    try: yield driver
    finally: driver.quit()


def write_nb(path: Path, params: str | None, *cells: str, markdown: str = 'A step.'):
    "A notebook with an optional `parameters` cell, a markdown cell and code cells."
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {'name': 'python3', 'language': 'python', 'display_name': 'Python 3'}
    nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    if params is not None: nb.cells.append(nbformat.v4.new_code_cell(params, metadata={'tags': ['parameters']}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def clean_env(env=None) -> dict:
    """`env` (default: ours) without MLFLOW_TRACKING_URI: `mlflow.set_tracking_uri` in a test exports it, and a child
    process must use its project's own store, not whichever store a previous test opened."""
    env = dict(os.environ if env is None else env)
    env.pop('MLFLOW_TRACKING_URI', None)
    return env


def imported(stderr: str) -> list[str]:
    "The modules that `-X importtime` (or PYTHONPROFILEIMPORTTIME) logged to `stderr`, one per import, in order."
    return [line.rpartition('|')[2].strip() for line in stderr.splitlines() if line.startswith('import time:')]


def mlops(root: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    """Run the `mlops-nb` command on the project `root` in a process of its own, forked from one that has imported it
    (tests/cliserver.py; a run of the console script when `env` sets other PYTHON* variables, which act at start-up)."""
    argv, env = [str(BIN / 'mlops-nb'), '-C', str(root), *args], clean_env(env)
    if _python_vars(env) != _python_vars(os.environ):
        return subprocess.run(argv, capture_output=True, text=True, env=env)
    global _commands
    if _commands is None: _commands = _CommandServer()
    return _commands.run(argv, env)


def _python_vars(env: dict) -> dict: return {k: v for k, v in env.items() if k.startswith('PYTHON')}


_commands = None


class _CommandServer:
    "tests/cliserver.py, started on first use by this pytest process (one per xdist worker); it ends with the process."
    def __init__(self):
        self.path = os.path.join(tempfile.mkdtemp(prefix='mlops-nb-cli-'), 'socket')
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name('cliserver.py')), self.path],
                                     stdout=subprocess.PIPE, text=True, env=clean_env())
        if self.proc.stdout.readline() != 'ready\n':
            raise RuntimeError(f'tests/cliserver.py did not start (exit code {self.proc.wait()})')

    def run(self, argv: list[str], env: dict) -> subprocess.CompletedProcess:
        "As `subprocess.run(argv, env=env, capture_output=True, text=True)`: returns once stdout and stderr are closed."
        (out, out_w), (err, err_w) = os.pipe(), os.pipe()
        with socket.socket(socket.AF_UNIX) as conn, open(os.devnull) as stdin:
            conn.connect(self.path)
            socket.send_fds(conn, [b'.'], [stdin.fileno(), out_w, err_w])
            os.close(out_w), os.close(err_w)
            conn.sendall(json.dumps({'argv': argv, 'cwd': os.getcwd(), 'env': env}).encode())
            conn.shutdown(socket.SHUT_WR)
            stdout, stderr = _read_to_end(out, err)
            with conn.makefile() as answer: code = int(answer.read())
        return subprocess.CompletedProcess(argv, code, stdout, stderr)


def _read_to_end(*fds: int) -> list[str]:
    "Everything written to the pipes `fds` until every writer closed them, as text (universal newlines)."
    chunks = {fd: [] for fd in fds}
    with selectors.DefaultSelector() as sel:
        for fd in fds: sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                if data := os.read(key.fd, 1 << 16): chunks[key.fd].append(data)
                else: sel.unregister(key.fd), os.close(key.fd)
    return [io.TextIOWrapper(io.BytesIO(b''.join(chunks[fd]))).read() for fd in fds]


THREE_STEPS = """\
name: three
steps:
  ingest: {notebook: notebooks/ingest.ipynb, inputs: [raw/values.txt], outputs: [data/values.csv]}
  prep:   {notebook: notebooks/prep.ipynb, needs: [ingest], outputs: [data/scaled.csv]}
  train:  {notebook: notebooks/train.ipynb, needs: [prep]}
profiles:
  pr: {params: {scale: 0.5}}
"""


@pytest.fixture
def three_step(tmp_path) -> Path:
    "A 3-step project: ingest copies raw numbers, prep scales them, train logs their sum as a metric."
    root = tmp_path / 'proj'
    (root / 'raw').mkdir(parents=True)
    (root / 'raw' / 'values.txt').write_text('1\n2\n3\n')
    write_nb(root / 'notebooks' / 'ingest.ipynb', 'limit: int = 100',
             'import mlops_nb as mn\nvals = mn.input_path("raw/values.txt").read_text().split()[:limit]',
             'mn.output_path("data/values.csv").write_text("\\n".join(vals))')
    write_nb(root / 'notebooks' / 'prep.ipynb', 'scale = 1.0',
             'import mlops_nb as mn\nvals = [float(v) * scale for v in mn.input_path("data/values.csv").read_text().split()]',
             'mn.output_path("data/scaled.csv").write_text("\\n".join(map(str, vals)))')
    write_nb(root / 'notebooks' / 'train.ipynb', 'boost = 0\npause = 0.0',
             'import time\nimport mlops_nb as mn\ntime.sleep(pause)',
             'total = sum(float(v) for v in mn.input_path("data/scaled.csv").read_text().split()) + boost',
             'mn.log_metric("total", total)\nmn.log_params({"n_values": 3})')
    (root / 'mlops.yaml').write_text(THREE_STEPS)
    return root


def register_versions(root: Path, name: str, metrics: list[dict], alias: str | None = None, tags: dict | None = None):
    """Register one tiny model per entry of `metrics` (as `metric.*` tags, with `tags`) in the SQLite store of `root`;
    returns the client."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.dummy import DummyClassifier

    from mlops_nb.api import model_requirements
    from mlops_nb.registry import register_version
    uri = f"sqlite:///{root / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(f'{name}-models')
    exp = found.experiment_id if found else mlflow.create_experiment(f'{name}-models',
                                                                     artifact_location=(root / 'mlartifacts').as_uri())
    client = MlflowClient(uri, uri)
    for m in metrics:
        with mlflow.start_run(experiment_id=exp):
            model = DummyClassifier().fit([[0], [1]], [0, 1])
            info = mlflow.sklearn.log_model(model, name='model', pip_requirements=model_requirements(model))
        register_version(client, name, info.model_uri, tags={**{f'metric.{k}': v for k, v in m.items()}, **(tags or {})},
                         alias=alias)
    return client


def register_iris(root: Path, client, exp: str, n_estimators: int, alias: str, onnx_features: int = 4,
                  reference: bool = False):
    """Train a forest on iris, log it with signature and ONNX export, register it under `alias` (as the pipeline does);
    returns (version, model, X). `onnx_features=3` exports a graph that fails on the signature's 4 columns (a broken
    export), `reference` attaches a whylogs profile of the training data as the version's reference profile."""
    import mlflow
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    from mlops_nb.api import model_requirements
    from mlops_nb.data import profile, write_profile
    from mlops_nb.registry import register_version
    iris = load_iris(as_frame=True)
    X, y = iris.data.set_axis(['sl', 'sw', 'pl', 'pw'], axis=1), iris.target_names[iris.target]
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=2, random_state=n_estimators).fit(X, y)
    tags = {}
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.sklearn.log_model(model, name='model', input_example=X.head(3), pip_requirements=model_requirements(model),
                                        skops_trusted_types=['sklearn.tree._tree.Tree', 'numpy.dtype'])
        onnx_model = model if onnx_features == 4 else RandomForestClassifier(n_estimators=2).fit(X.iloc[:, :onnx_features], y)
        onx = to_onnx(onnx_model, initial_types=[('input', FloatTensorType([None, onnx_features]))], options={'zipmap': False})
        (root / 'model.onnx').write_bytes(onx.SerializeToString())
        mlflow.log_artifact(str(root / 'model.onnx'))
        tags['mlops_nb.onnx'] = f'runs:/{run.info.run_id}/model.onnx'
        if reference:
            mlflow.log_artifact(str(write_profile(profile(X), root / 'reference.whylogs')))
            tags['mlops_nb.reference_profile'] = f'runs:/{run.info.run_id}/reference.whylogs'
    return register_version(client, 'iris', info.model_uri, alias=alias, tags=tags), model, X


GIT_ID = ['-c', 'user.name=Tess Ter', '-c', 'user.email=tess@example.com']


def git(root: Path, *args: str, check=True) -> str:
    "Output of `git ARGS` in `root` (as Tess Ter)."
    r = subprocess.run(['git', *GIT_ID, *args], cwd=root, capture_output=True, text=True)
    if check and r.returncode: raise AssertionError(f"git {' '.join(args)}: {r.stderr}")
    return r.stdout


def tiny_hub(tmp_path: Path, gates: str) -> Path:
    "A one-step project with `gates` and model `m` in models.yaml, pushed to the bare hub `tmp_path/hub.git`."
    proj = tmp_path / 'origin-work'
    write_nb(proj / 'a.ipynb', None, 'x = 1')
    (proj / 'mlops.yaml').write_text(f'name: tiny\nsteps:\n  a: {{notebook: a.ipynb}}\ngates:\n{gates}')
    (proj / 'models.yaml').write_text('# desired state\nmodels:\n  m: {}\n')
    (proj / '.gitignore').write_text('mlruns.db\nmlartifacts/\n.mlops_nb/\nruns/\n')
    return hub_of(proj, tmp_path / 'hub.git')


def full_profile(project: Path, params: dict):
    "Set the parameters of the weather project's full (`main`) profile in its mlops.yaml (one line: `  main: {...}`)."
    text = (project / 'mlops.yaml').read_text()
    (project / 'mlops.yaml').write_text(re.sub(r'(?m)^  main: .*$', f'  main: {{params: {json.dumps(params)}}}', text))


def hub_of(project: Path, hub: Path) -> Path:
    """Commit `project` on `main` and push it to the new bare repository `hub`, which stands in for GitHub (an absolute
    path: act's copy of a clone keeps the remote)."""
    git(hub.parent, 'init', '-q', '--bare', '-b', 'main', str(hub))
    if not (project / '.git').exists(): git(project, 'init', '-q', '-b', 'main')
    git(project, 'add', '-A')
    if git(project, 'status', '--porcelain'): git(project, 'commit', '-qm', 'project')
    git(project, 'remote', 'remove', 'origin', check=False)   # a copy of a clone: its own hub from now on
    git(project, 'remote', 'add', 'origin', str(hub))
    git(project, 'push', '-q', 'origin', 'main')
    return hub


def release_key(project: Path, principal: str = 'release@weather') -> dict:
    """A release key made with ssh-keygen beside `project` and trusted in its `.mlops-nb/allowed_signers` (commit it to
    main); returns the environment of a job holding the key (`mlops-nb ci -s MLOPS_NB_SIGNING_KEY` hands it to act)."""
    key = project.parent / f'{project.name}-release-key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', principal, '-f', str(key)], check=True)
    (project / '.mlops-nb').mkdir(exist_ok=True)
    (project / '.mlops-nb' / 'allowed_signers').write_text(f"{principal} {Path(f'{key}.pub').read_text()}")
    return {**os.environ, 'MLOPS_NB_SIGNING_KEY': key.read_text()}


def clone(hub: Path, dest: Path) -> Path:
    "A fresh clone of `hub`."
    git(dest.parent, 'clone', '-q', str(hub), str(dest))
    return dest


@pytest.fixture
def serve_cmd():
    "`_serve(root, *args)` starts `mlops-nb serve` on a free port; every server it started is stopped afterwards."
    procs = []
    yield lambda *a, **kw: _serve(procs, *a, **kw)
    for p in procs:
        if p.poll() is None: p.kill()
        p.wait(30)


def _serve(procs, root, *args, env=None):
    "Start `mlops-nb serve` on a free port; returns (process, url) once it answers /health, or the exited process."
    from services import free_port
    port = free_port()
    proc = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(root), 'serve', *args, '--port', str(port)],
                            env=clean_env(env), stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    url, deadline = f'http://127.0.0.1:{port}', time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f'{url}/health', timeout=1).ok: return proc, url
        except requests.ConnectionError: time.sleep(0.2)
    return proc, url
