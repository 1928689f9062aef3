"""The server's surface, third round: operators apart from clients, one reload at a time, a bucket clients cannot
aim, no NaN, no forged log lines, no DNS rebinding, no websockets. The app is called in-process (starlette's
TestClient over the real ASGI stack: guard, FastAPI, routes) with stand-in models; test_serve.py runs it in uvicorn."""
import hashlib
import json
import threading
import time

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mlops_nb.canary import Split
from mlops_nb.loader import ServedModel
from mlops_nb.serve import ServeOptions, create_app


def stand_in(alias, gate=None):
    def predict(rows):
        return ['rain' if r[0] < 10 else 'sun' for r in rows]
    if gate and alias == 'champion' and gate.is_set(): gate.wait_until_released()
    return ServedModel('demo', alias, 4 if alias == 'challenger' else 3, 'onnx', [('temp_max', float), ('month', int)],
                       predict, time.time(), 0.01)


def bearer(token): return {'Authorization': f'Bearer {token}'}


def test_operators_and_clients_hold_different_tokens():
    "A client's token can predict but not move the split or reload; the admin token can; no admin token, no admin."
    app = create_app(stand_in, options=ServeOptions(token='client', admin_token='operator', canary='challenger',
                                                    canary_percent=10, check_seconds=60))
    with TestClient(app) as c:
        record = {'temp_max': 8.5, 'month': 11}
        assert c.post('/predict', json=record, headers=bearer('client')).status_code == 200
        assert c.post('/admin/split', json={'percent': 50}, headers=bearer('client')).status_code == 403
        assert c.post('/admin/reload', headers=bearer('client')).status_code == 403
        r = c.post('/admin/split', json={'percent': 50, 'reason': 'more data'}, headers=bearer('operator'))
        assert r.status_code == 200 and r.json()['percent'] == 50
    plain = create_app(stand_in, options=ServeOptions(token='client', admin_token=None))
    with TestClient(plain) as c:
        r = c.post('/admin/reload', headers=bearer('client'))
        assert r.status_code == 403 and 'MLOPS_NB_ADMIN_TOKEN' in r.json()['detail']


def test_one_reload_at_a_time():
    "Each reload starts a loader process: a second one while the first runs is a 429, not a second process."
    started, release = threading.Event(), threading.Event()
    calls = []
    def slow(alias):
        calls.append(alias)
        if len(calls) > 1:       # a reload (the first call is the server's start)
            started.set()
            release.wait(30)
        return stand_in(alias)
    app = create_app(slow, options=ServeOptions(token='client', admin_token='operator'))
    with TestClient(app) as c:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=c.post('/admin/reload', headers=bearer('operator'))))
        t.start()
        assert started.wait(30)
        assert c.post('/admin/reload', headers=bearer('operator')).status_code == 429
        release.set()
        t.join(30)
        assert first['r'].status_code == 200 and len(calls) == 2


def test_a_client_cannot_choose_keys_that_land_on_the_canary():
    "Keys picked with the public hash to land below 10 % are, with the server's secret, spread like any other keys."
    aimed = [k for k in (f'user-{i}' for i in range(200_000))
             if int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), 'big') / 2**64 * 100 < 10][:2000]
    split = Split(10)
    on_canary = sum(split.choose(k) == 'canary' for k in aimed)
    assert 120 < on_canary < 280, on_canary                          # about 10 % of them, not all
    assert {split.choose(k) for k in aimed[:50]} == {split.choose(k) for k in aimed[:50]}  # still sticky


@pytest.mark.parametrize('value', ['NaN', 'Infinity', '-Infinity', '1e999'])
def test_nan_and_infinity_are_refused(value):
    with TestClient(create_app(stand_in, options=ServeOptions(token='client'))) as c:
        for body in (f'{{"temp_max": {value}, "month": 11}}', f'{{"records": [{{"temp_max": {value}, "month": 11}}]}}'):
            r = c.post('/predict', content=body, headers={**bearer('client'), 'Content-Type': 'application/json'})
            assert r.status_code == 422 and 'finite_number' in {d['type'] for d in r.json()['detail']}, r.text


def test_a_reason_cannot_forge_a_log_line(tmp_path, capfd):
    "A newline in the reason of a split change stays inside its own line of the log and of the audit trail."
    app = create_app(stand_in, options=ServeOptions(token='c', admin_token='a', canary='challenger', canary_percent=10,
                                                    audit_log=tmp_path / 'audit.jsonl', check_seconds=60))
    with TestClient(app) as c:
        forged = 'ok\nmlops-nb serve: withdrawn: canary challenger (v4) at 0%: forged'
        assert c.post('/admin/split', json={'percent': 20, 'reason': forged}, headers=bearer('a')).status_code == 200
    err = capfd.readouterr().err.splitlines()
    assert not any(line.startswith('mlops-nb serve: withdrawn') for line in err), err
    events = [json.loads(line) for line in (tmp_path / 'audit.jsonl').read_text().splitlines()]
    assert [e['event'] for e in events] == ['split', 'split'] and '\n' not in events[-1]['reason']


def test_without_a_token_only_loopback_host_names_are_answered():
    "DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends Host: evil.example, and is refused."
    app = create_app(stand_in, options=ServeOptions(token=None, allowed_hosts=('127.0.0.1', 'localhost', '::1')))
    with TestClient(app, base_url='http://127.0.0.1:8000') as c:
        assert c.get('/health').status_code == 200
        assert c.get('/health', headers={'Host': 'localhost:8000'}).status_code == 200
        assert c.get('/health', headers={'Host': '[::1]:8000'}).status_code == 200
        assert c.post('/predict', json={'temp_max': 1.0, 'month': 1}, headers={'Host': 'evil.example:8000'}).status_code == 403
        assert c.get('/metrics', headers={'Host': 'evil.example'}).status_code == 403


def test_websockets_are_refused():
    with TestClient(create_app(stand_in, options=ServeOptions(token='client'))) as c:
        with pytest.raises(WebSocketDisconnect) as e:
            with c.websocket_connect('/predict', headers=bearer('client')) as ws: ws.receive_text()
        assert e.value.code == 1008


def test_the_canary_judge_reads_totals_whose_size_does_not_grow_with_traffic():
    """6,000 batches of 1,000 predictions into each variant's window, as ~200 req/s of 1,000-row batches for 30 s:
    the judge reads at most a window's slots of bounded totals (before, it sorted and counted every label again)."""
    from mlops_nb.canary import LATENCY_EDGES, MAX_LABELS, Window, judge
    from mlops_nb.config import CanaryLimits
    windows = {v: Window(60) for v in ('canary', 'primary')}
    labels = ['rain', 'sun', 'snow', 'fog'] * 250
    for i in range(6000):
        for w in windows.values(): w.add(True, 0.0005 + i % 7 * 1e-4, labels)
    canary, primary = windows['canary'].recent(), windows['primary'].recent()
    assert canary.calls == 6000 and canary.labels['rain'] == 6000 * 250
    assert len(windows['canary'].slots) <= Window.SLOTS
    assert len(canary.latency) <= len(LATENCY_EDGES) + 1 and len(canary.labels) <= MAX_LABELS
    assert judge(CanaryLimits(min_requests=100), canary, primary) is None


def test_the_openapi_document_describes_the_body_it_validates():
    "With --docs, /predict's request body is the signature's Record or a Batch of them, every $ref resolving."
    with TestClient(create_app(stand_in, options=ServeOptions(token='client', docs=True))) as c:
        doc = c.get('/openapi.json', headers=bearer('client')).json()
    refs = {r.split('/')[-1] for r in json.dumps(doc['paths']['/predict']).split('"$ref": "')[1:] for r in [r.split('"')[0]]}
    assert refs == {'Record', 'Batch'} and refs <= set(doc['components']['schemas'])
    assert set(doc['components']['schemas']['Record']['properties']) == {'temp_max', 'month'}
