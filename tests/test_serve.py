"""The model server, started for real with uvicorn on a free localhost port, serving versions from a SQLite registry."""
import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import BIN, clean_env, write_nb
from mlflow.tracking import MlflowClient
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from mlops_nb.registry import register_version

TOKEN = 'test-serve-token'


def _register(root, client, exp, n_estimators, alias):
    "Train a forest on iris, log it with signature and ONNX export, register it under `alias` (as the pipeline does)."
    iris = load_iris(as_frame=True)
    X, y = iris.data.set_axis(['sl', 'sw', 'pl', 'pw'], axis=1), iris.target_names[iris.target]
    model = RandomForestClassifier(n_estimators=n_estimators, max_depth=2, random_state=n_estimators).fit(X, y)
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.sklearn.log_model(model, name='model', input_example=X.head(3),
                                        skops_trusted_types=['sklearn.tree._tree.Tree', 'numpy.dtype'])
        onx = to_onnx(model, initial_types=[('input', FloatTensorType([None, 4]))], options={'zipmap': False})
        (root / 'model.onnx').write_bytes(onx.SerializeToString())
        mlflow.log_artifact(str(root / 'model.onnx'))
    return register_version(client, 'iris', info.model_uri, alias=alias,
                            tags={'mlops_nb.onnx': f'runs:/{run.info.run_id}/model.onnx'}), model, X


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp('serve')
    write_nb(root / 'a.ipynb', None, 'x = 1')
    (root / 'mlops.yaml').write_text('name: iris\nsteps:\n  a: {notebook: a.ipynb}\n')
    uri = f"sqlite:///{root / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment('iris', artifact_location=(root / 'mlartifacts').as_uri())
    client = MlflowClient(uri, uri)
    _, champion, X = _register(root, client, exp, 5, 'champion')
    _, challenger, _ = _register(root, client, exp, 7, 'challenger')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(root), 'serve', 'iris', '--port', str(port),
                             '--shadow', 'challenger', '--max-batch', '200', '--log-requests', str(root / 'requests'),
                             '--window', '2'],
                            env=clean_env({**os.environ, 'MLOPS_NB_TOKEN': TOKEN}), stderr=subprocess.PIPE, text=True)
    url = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f'{url}/health', timeout=1).ok: break
        except requests.ConnectionError: time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f'server did not start: {proc.stderr.read()}')
    yield {'url': url, 'root': root, 'client': client, 'champion': champion, 'challenger': challenger, 'X': X, 'exp': exp}
    proc.terminate()
    proc.wait(10)


def post(srv, body, token=TOKEN, **kw):
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    return requests.post(f"{srv['url']}/predict", json=body, headers=headers, timeout=10, **kw)


def test_health_and_binding(server):
    h = requests.get(f"{server['url']}/health").json()
    assert (h['model'], h['version'], h['alias'], h['runtime']) == ('iris', 1, 'champion', 'onnx')
    assert h['shadow'] == {'alias': 'challenger', 'version': 2} and h['load_seconds'] > 0


def test_single_and_batch_predictions_match_sklearn(server):
    X = server['X']
    one = post(server, X.iloc[0].to_dict())
    assert one.status_code == 200 and one.json()['predictions'] == list(server['champion'].predict(X.iloc[:1]))
    batch = post(server, {'records': X.iloc[:150].to_dict('records')})
    got, want = batch.json()['predictions'], server['champion'].predict(X.iloc[:150])
    assert np.mean(np.array(got) == want) >= 0.98  # ONNX float32 vs sklearn float64


@pytest.mark.parametrize('body, field', [
    ({'sl': 5.1, 'sw': 3.5, 'pl': 1.4}, 'pw'),                 # missing
    ({'sl': 5.1, 'sw': 3.5, 'pl': 1.4, 'pw': 'wide'}, 'pw'),   # wrong type
    ({'sl': 5.1, 'sw': 3.5, 'pl': 1.4, 'pw': 0.2, 'x': 1}, 'x'),  # unknown field
])
def test_invalid_payload_is_422_naming_the_field(server, body, field):
    r = post(server, body)
    assert r.status_code == 422
    assert any(e['loc'][-1] == field for e in r.json()['detail']), r.json()


def test_limits_and_auth(server):
    rec = server['X'].iloc[0].to_dict()
    assert post(server, {'records': [rec] * 201}).status_code == 422            # batch over --max-batch
    assert post(server, {'records': [rec] * 40000}).status_code == 413          # body over 1 MB
    assert post(server, rec, token=None).status_code == 401
    assert post(server, rec, token='wrong').status_code == 401


def test_metrics_and_shadow(server):
    rec = server['X'].iloc[100].to_dict()
    for _ in range(5): assert post(server, rec).status_code == 200
    time.sleep(0.5)
    text = requests.get(f"{server['url']}/metrics").text
    assert 'mlops_nb_requests_total{status="200"}' in text and 'mlops_nb_requests_total{status="401"}' in text
    assert 'mlops_nb_predict_seconds_bucket{le="0.01",role="primary"}' in text
    assert 'mlops_nb_predictions_total{label="virginica"}' in text or 'mlops_nb_predictions_total{label="versicolor"}' in text
    assert 'mlops_nb_model_version{alias="champion",model="iris",role="primary"} 1.0' in text
    shadow = [json.loads(line) for line in (server['root'] / 'reports' / 'serve' / 'shadow.jsonl').read_text().splitlines()]
    assert shadow and all(s['shadow_version'] == 2 and 0 <= s['agree'] <= s['n'] for s in shadow)
    assert 'mlops_nb_shadow_total{agree="true"}' in text


def test_hot_reload_under_load_drops_nothing(server):
    rec = server['X'].iloc[60].to_dict()
    assert requests.post(f"{server['url']}/admin/reload", timeout=10).status_code == 401  # token required
    server['client'].set_registered_model_alias('iris', 'champion', '2')  # what reconcile does

    def one(_): return post(server, rec)
    with ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(one, i) for i in range(400)]
        time.sleep(0.3)
        r = requests.post(f"{server['url']}/admin/reload", headers={'Authorization': f'Bearer {TOKEN}'}, timeout=30)
        results = [p.result() for p in pending]
    assert r.status_code == 200 and r.json() == {'primary': 2, 'shadow': 2}
    assert all(x.status_code == 200 for x in results)
    assert requests.get(f"{server['url']}/health").json()['version'] == 2
    assert {x.json()['version'] for x in results} <= {1, 2}
    assert pd.Series([x.json()['version'] for x in results]).iloc[-1] == 2 or post(server, rec).json()['version'] == 2


def test_request_profiles_in_windows_feed_the_monitor(server):
    from mlops_nb.data import profile, read_profile, write_profile
    X, root = server['X'], server['root']
    for i in range(3): assert post(server, X.iloc[i].to_dict()).status_code == 200
    time.sleep(2.2)  # the next request opens a new window, which writes the previous one
    assert post(server, X.iloc[3].to_dict()).status_code == 200
    time.sleep(0.5)
    files = sorted((root / 'requests').glob('*.whylogs'))
    assert files
    counts = [read_profile(f).get_column('sl').get_metric('counts').n.value for f in files]
    assert sum(counts) >= 3  # earlier tests' requests land in earlier windows too
    write_profile(profile(X), root / 'train.whylogs')
    r = subprocess.run([str(BIN / 'mlops-nb'), '-C', str(root), 'monitor', '--data', str(files[-1]),
                        '--reference', str(root / 'train.whylogs')], capture_output=True, text=True, env=clean_env())
    assert r.returncode in (0, 3) and f'({counts[-1]} rows)' in r.stdout, r.stdout + r.stderr
    assert set(json.loads((root / 'reports' / 'monitor' / 'drift.json').read_text())['features']) == {'sl', 'sw', 'pl', 'pw'}
