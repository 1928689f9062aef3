"""The server's container image, built for real with buildah on a Debian root filesystem made by mmdebstrap (no image
registry is reachable here, so `python:3.11-slim` cannot be pulled), then run as its Dockerfile says."""
import json
import os
import shutil
import signal
import subprocess
import time

import mlflow
import psutil
import pytest
import requests
from conftest import BIN, clean_env, mlops, register_iris, require_service, write_nb
from mlflow.tracking import MlflowClient
from services import free_port

TOKEN = 'test-container-token'


@pytest.fixture(scope='module')
def buildah(tmp_path_factory):
    "`buildah(*args)` on a private vfs store, and a base image with Debian's Python 3.11 tagged localhost/debian-python."
    require_service(bool(shutil.which('buildah') and shutil.which('mmdebstrap')),
                    'buildah/mmdebstrap not installed (Debian: apt-get install buildah mmdebstrap; .ci/run does it)')
    tmp = tmp_path_factory.mktemp('buildah')
    store = ['buildah', '--storage-driver', 'vfs', '--root', str(tmp / 'store'), '--runroot', str(tmp / 'run')]
    def run(*args, **kw): return subprocess.run([*store, *args], capture_output=True, text=True, **kw)
    run.cmd = store
    made = subprocess.run(['mmdebstrap', '--quiet', '--variant=apt', '--include=python3,python3-venv', 'bookworm',
                           str(tmp / 'rootfs.tar')], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    (tmp / 'Containerfile').write_text('FROM scratch\nADD rootfs.tar /\n')
    base = run('bud', '--isolation', 'chroot', '-t', 'localhost/debian-python:bookworm', '-f', str(tmp / 'Containerfile'),
               str(tmp))
    assert base.returncode == 0, base.stderr[-2000:]
    yield run
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp('container')
    write_nb(root / 'a.ipynb', None, 'x = 1')
    (root / 'mlops.yaml').write_text('name: iris\nsteps:\n  a: {notebook: a.ipynb}\n')
    uri = f"sqlite:///{root / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment('iris', artifact_location=(root / 'mlartifacts').as_uri())
    _, model, X = register_iris(root, MlflowClient(uri, uri), exp, 5, 'champion')
    return {'root': root, 'model': model, 'X': X}


def test_the_image_serves_the_onnx_model_as_a_non_root_user(project, buildah, tmp_path):
    context = tmp_path / 'context'
    r = mlops(project['root'], 'serve', 'iris', '--dockerfile', str(context))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in context.iterdir()) == ['.mlops-nb-context', 'Dockerfile', 'app', 'model', 'requirements.txt',
                                                       'wheels']
    assert sorted(p.name for p in (context / 'model').iterdir()) == ['model.onnx', 'serving.json']
    built = buildah('bud', '--isolation', 'chroot', '--format', 'docker', '--build-arg', 'BASE=localhost/debian-python:bookworm',
                    '-t', 'localhost/iris-serve', str(context))
    assert built.returncode == 0, built.stderr[-3000:]
    config = json.loads(buildah('inspect', '--type', 'image', 'localhost/iris-serve').stdout)['Docker']['config']
    assert config['User'] == '10001:10001' and config['Healthcheck']['Test'][0] == 'CMD' and TOKEN not in json.dumps(config)
    print('image size:', buildah('images', '--format', '{{.Size}}', 'localhost/iris-serve').stdout.strip())
    container = buildah('from', 'localhost/iris-serve').stdout.strip()
    token = tmp_path / 'token'
    token.write_text(TOKEN)
    os.chown(token, 10001, 10001)
    token.chmod(0o400)
    port = free_port()
    def in_container(*cmd, popen=False):
        args = [*buildah.cmd, 'run', '--isolation', 'chroot',
                '--env', f'UVICORN_PORT={port}', '--mount', f'type=bind,source={token},destination=/run/secrets/token,ro',
                container, '--', *cmd]
        if popen: return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        return subprocess.run(args, capture_output=True, text=True, timeout=120)
    modules = in_container('/opt/serve/bin/python', '-c', "import importlib.util as u; "
                           "print([m for m in ('mlflow', 'sklearn', 'skops', 'pandas', 'whylogs') if u.find_spec(m)])")
    assert modules.stdout.strip() == '[]', (modules.returncode, modules.stdout + modules.stderr)  # only the server's deps
    server = in_container(*config['Cmd'], popen=True)  # exactly the image's command
    try:
        url, deadline = f'http://127.0.0.1:{port}', time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if requests.get(f'{url}/health', timeout=1).ok: break
            except requests.ConnectionError: time.sleep(0.3)
        assert server.poll() is None, server.stderr.read()
        health = requests.get(f'{url}/health', timeout=5).json()
        assert (health['model'], health['alias'], health['version'], health['runtime']) == ('iris', 'champion', 1, 'onnx')
        X = project['X']
        assert requests.post(f'{url}/predict', json=X.iloc[0].to_dict(), timeout=5).status_code == 401
        r = requests.post(f'{url}/predict', json={'records': X.to_dict('records')}, timeout=5,
                          headers={'Authorization': f'Bearer {TOKEN}'})
        agree = sum(a == b for a, b in zip(r.json()['predictions'], project['model'].predict(X), strict=True)) / len(X)
        assert r.status_code == 200 and agree >= 0.98, agree  # ONNX float32 vs the sklearn model
        uids = {p.uids().real for p in psutil.process_iter(['cmdline'])
                if 'mlops_nb.serve:bundle_app' in ' '.join(p.info['cmdline'] or []) and 'buildah' not in p.info['cmdline'][0]}
        assert uids == {10001}, uids
        check = in_container(*config['Healthcheck']['Test'][1:])
        assert check.returncode == 0, check.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        buildah('rm', container)


def test_a_bundle_without_a_token_refuses_to_start_and_a_failed_build_context_leaves_nothing(project, tmp_path):
    "The image's app outside a container: one line without a token. A context whose wheels cannot be fetched: no folder."
    context = tmp_path / 'context'
    assert mlops(project['root'], 'serve', 'iris', '--dockerfile', str(context)).returncode == 0
    env = {k: v for k, v in clean_env().items() if not k.startswith('MLOPS_NB_TOKEN')}
    app = subprocess.run([str(BIN / 'uvicorn'), '--factory', 'mlops_nb.serve:bundle_app', '--port', str(free_port())],
                         env={**env, 'MLOPS_NB_BUNDLE': str(context / 'model')}, capture_output=True, text=True, timeout=60)
    assert app.returncode != 0 and 'a served bundle needs a token: set MLOPS_NB_TOKEN or MLOPS_NB_TOKEN_FILE' in app.stderr
    offline = {**clean_env(), 'PIP_INDEX_URL': 'http://127.0.0.1:9/simple', 'PIP_NO_CACHE_DIR': '1', 'PIP_RETRIES': '0',
               'PIP_TIMEOUT': '2'}
    failed = mlops(project['root'], 'serve', 'iris', '--dockerfile', str(tmp_path / 'other'), env=offline)
    assert failed.returncode == 1 and "could not download the server's wheels" in failed.stderr, failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['context']  # no half-written folder, no temporary left


def test_the_build_context_replaces_only_its_own_folder_pins_every_wheel_by_hash_and_takes_a_digest(project, tmp_path):
    """`--dockerfile .` (or any folder it did not write) is refused and left as it was; every wheel of the context,
    the server's dependencies' dependencies too, is pinned by sha256 and installed with --require-hashes; a base image
    may be pinned by digest, and a base that is not an image name is refused."""
    import hashlib
    root = project['root']
    before = sorted(p.name for p in root.iterdir())
    r = mlops(root, 'serve', 'iris', '--dockerfile', str(root))         # what `--dockerfile .` in the project names
    assert r.returncode == 1 and 'not a build context mlops-nb wrote' in r.stderr, r.stderr
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'notes.txt').write_text('keep me')
    assert mlops(root, 'serve', 'iris', '--dockerfile', str(tmp_path / 'mine')).returncode == 1
    assert sorted(p.name for p in root.iterdir()) == before and (tmp_path / 'mine' / 'notes.txt').read_text() == 'keep me'
    digest = 'localhost/debian-python@sha256:' + 'ab' * 32
    context = tmp_path / 'context'
    assert mlops(root, 'serve', 'iris', '--dockerfile', str(context), '--base', digest).returncode == 0
    assert mlops(root, 'serve', 'iris', '--dockerfile', str(context), '--base', digest).returncode == 0  # its own: replaced
    import re
    norm = lambda name: re.sub(r'[-_.]+', '-', name).lower()
    wheels = {(norm(w.name.split('-')[0]), w.name.split('-')[1]): w for w in (context / 'wheels').glob('*.whl')}
    lines = (context / 'requirements.txt').read_text().splitlines()
    assert len(lines) == len(wheels) > 7 and any(line.startswith('starlette==') for line in lines)   # transitive too
    for line in lines:
        pin, _, sha = line.partition(' --hash=sha256:')
        name, _, version = pin.partition('==')
        assert hashlib.sha256(wheels[norm(name), version].read_bytes()).hexdigest() == sha, line
    dockerfile = (context / 'Dockerfile').read_text()
    assert '--require-hashes' in dockerfile and f'ARG BASE={digest}' in dockerfile
    bad = mlops(root, 'serve', 'iris', '--dockerfile', str(tmp_path / 'x'), '--base', 'python:3.11\nRUN curl evil.example')
    assert bad.returncode == 1 and '--base' in bad.stderr and not (tmp_path / 'x').exists()
