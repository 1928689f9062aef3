"""A hostile published version, end to end: pushed to the hub by someone who can push tags to an unsigned project,
it carries a script in its run's status, live markup in a step's status, a `javascript:` link and an image of the
reader's `.env` in a rendered notebook, and a lineage URI of the attacker's; a second one unpacks to 2.2 GB. Through
`pull` -> `report` -> serving: nothing runs in Chromium, no file outside the bundle reaches a page, the URI is never
fetched, and the huge one is refused in one line with nothing written, the pull under 300 MB."""
import socket
import subprocess
import threading
import time

import nbformat
import psutil
from conftest import BIN, chromium, clean_env, clone, hub_of, mlops, register_iris, write_nb
from mlflow.tracking import MlflowClient

from mlops_nb.bundle import VersionRecord, file_hashes, git_registry, utcnow
from mlops_nb.config import load_config, write_json

EVIL_RUN = '20990101-000000-000001'


def listener():
    "A TCP port that counts who connects to it (the lineage URI points there)."
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen()
    hits = []
    def accept():
        while True:
            try: conn, _ = s.accept()
            except OSError: return
            hits.append(1)
            conn.close()
    threading.Thread(target=accept, daemon=True).start()
    return s, hits


def peak_rss(argv) -> tuple[subprocess.CompletedProcess, int]:
    "Run `argv`; its result and its process's peak resident memory, polled every 20 ms (git archive: its child)."
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try: peak = max(peak, root.memory_info().rss)
        except psutil.NoSuchProcess: pass
        time.sleep(0.02)
    out, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), peak


def stage(proj, staged, version, commit, extra):
    "Stage `iris` version `version` as a copy of v1's bundle with `extra(folder)` applied, as `publish --stage` would."
    bundle = staged / 'iris' / 'bundle'
    git_registry(load_config(proj), fetch=False).extract('refs/tags/iris@v1', bundle)
    lineage = extra(bundle) or {}
    rec = VersionRecord(model='iris', version=version, created=utcnow(), metrics={'accuracy': 0.9},
                        lineage={'git_commit': commit, 'run_id': EVIL_RUN, **lineage}, files=file_hashes(bundle))
    (staged / 'iris' / 'record.json').write_text(rec.model_dump_json(indent=1))


def test_a_hostile_version_goes_through_pull_report_and_serving_harmlessly(tmp_path, monkeypatch):
    proj = tmp_path / 'work'
    write_nb(proj / 'a.ipynb', None, 'x = 1')
    (proj / 'mlops.yaml').write_text('name: iris\nsteps:\n  a: {notebook: a.ipynb}\n')
    (proj / 'models.yaml').write_text('models:\n  iris: {}\n')
    (proj / '.gitignore').write_text('mlruns.db\nmlartifacts/\n.mlops_nb/\nruns/\nmodel.onnx\n')
    hub = hub_of(proj, tmp_path / 'hub.git')
    uri = f"sqlite:///{proj / 'mlruns.db'}"
    client = MlflowClient(uri, uri)
    import mlflow
    mlflow.set_tracking_uri(uri)
    register_iris(proj, client, mlflow.create_experiment('iris', artifact_location=(proj / 'art').as_uri()), 5, 'champion')
    assert mlops(proj, 'publish').returncode == 0                                 # iris@v1, as any release
    commit = git_registry(load_config(proj), fetch=False).run('rev-parse', 'HEAD')
    port, hits = listener()
    secret = 'DB_PASSWORD=never-in-a-page-7731'

    def hostile(bundle):
        run = bundle / 'run' / EVIL_RUN
        write_json(run / 'run.json', {'run_id': EVIL_RUN, 'steps': ['train'], 'status': '<script>window.PWNED_RUN=1</script>',
                                      'started': '2099-01-01T00:00:00', 'git': {'commit': commit}})
        write_json(run / 'train' / 'step.json', {'step': 'train', 'notebook': 'train.ipynb', 'status':
                                                 '<img src=x onerror="window.PWNED_STEP=1">', 'metrics': {'accuracy': 0.9},
                                                 'params': {}, 'seconds': 1})
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
            '[click](javascript:window.PWNED_LINK=1) ![env](../../../../../../.env) ![env2](/proc/self/environ)')])
        nbformat.write(nb, run / 'train' / 'train.ipynb')
        return {'registered_from': f'http://127.0.0.1:{port.getsockname()[1]}/steal'}

    def huge(bundle):
        with open(bundle / 'weights.bin', 'wb') as f: f.truncate(2200 << 20)   # 2.2 GB of zeros, a few MB in git

    for version, extra in ((2, hostile), (3, huge)):
        staged = tmp_path / f'staged-{version}'
        stage(proj, staged, version, commit, extra)
        r = mlops(proj, 'publish', '--from', str(staged))
        assert r.returncode == 0 and f'iris@v{version}' in r.stdout, r.stderr

    fresh = clone(hub, tmp_path / 'fresh')
    (fresh / '.env').write_text(secret + '\n')
    pulled, peak = peak_rss([str(BIN / 'mlops-nb'), '-C', str(fresh), 'pull'])
    assert peak < 300 << 20, peak >> 20                                      # the 2.2 GB is never unpacked
    refusals = [line for line in (pulled.stdout + pulled.stderr).splitlines() if 'iris@v3' in line]
    assert pulled.returncode == 1 and len(refusals) == 1 and 'over the limit' in refusals[0], pulled.stdout + pulled.stderr
    assert not (fresh / '.mlops_nb' / 'published' / 'iris@v3').exists()
    store = MlflowClient(f"sqlite:///{fresh / 'mlruns.db'}")
    assert sorted(int(v.version) for v in store.search_model_versions("name='iris'")) == [1, 2]

    assert mlops(fresh, 'report').returncode == 0
    pages = sorted((fresh / 'reports').rglob('*.html'))
    assert any(EVIL_RUN in str(p) for p in pages), pages
    for page in pages:
        text = page.read_text()
        assert 'never-in-a-page' not in text and 'javascript:' not in text.lower(), page
    with chromium(tmp_path / '.chrome') as driver:
        for page in pages:
            driver.get(page.as_uri())
            time.sleep(0.3)
            assert driver.execute_script('return [window.PWNED_RUN, window.PWNED_STEP, window.PWNED_LINK]') == [None] * 3, page

    from mlops_nb.loader import load_version
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)   # set above for the work project's store
    store.set_registered_model_alias('iris', 'champion', '2')
    served = load_version(load_config(fresh), 'iris', 'champion')          # from its verified bundle only
    assert served.version == 2 and len(served.predict([[5.1, 3.5, 1.4, 0.2]])) == 1
    port.close()
    assert hits == []                                                        # the lineage URI was never fetched
