"""The JupyterLab extension on a real `jupyter lab` server driven by headless Chromium: the pipeline panel, runs,
staleness, parameters, promotion, a failed step; the same extension in Notebook 7; and the REST API's refusals."""
import os
import re
import secrets
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
import requests
from conftest import BIN, REPO, chromium, clean_env, git, mlops, release_key, write_nb
from services import free_port

STEPS = ['ingest', 'validate', 'features', 'train', 'evaluate', 'register']


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "The weather project (run once and published, in git), and `jupyter lab` serving it with a token."
    tmp = tmp_path_factory.mktemp('lab')
    root = tmp / 'weather'
    assert mlops(tmp, 'init', str(root)).returncode == 0
    key = release_key(root)                              # the template requires signed versions
    git(root, 'init', '-q', '-b', 'main')
    git(root, 'add', '-A')
    git(root, 'commit', '-qm', 'weather')
    r = mlops(root, 'run', '--profile', 'pr')
    assert r.returncode == 0, r.stderr
    r = mlops(root, 'publish', env=key)                  # weather@v1, a tag of this repository (no remote)
    assert r.returncode == 0, r.stderr
    settings = tmp / 'lab-settings' / '@jupyterlab' / 'apputils-extension'   # no "news?" prompt over the screenshots
    settings.mkdir(parents=True)
    (settings / 'notification.jupyterlab-settings').write_text('{"fetchNews": "false"}')
    with jupyter('lab', root, tmp, '--LabApp.expose_app_in_browser=True',
                 f"--LabApp.user_settings_dir={tmp / 'lab-settings'}") as server:
        yield {'root': root, 'tmp': tmp, **server}


@contextmanager
def jupyter(app: str, root: Path, tmp: Path, *args: str, env=None):
    "`jupyter lab` (or `server`) on `root` with a token, on a free port of 127.0.0.1, until the block ends."
    token, port = secrets.token_hex(16), free_port()
    proc = subprocess.Popen([str(BIN / 'jupyter'), app, '--no-browser', '--ServerApp.ip=127.0.0.1', f'--port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
                             '--ServerApp.allow_root=True', *args], env=clean_env(env),
                            stdout=subprocess.DEVNULL, stderr=open(tmp / f'{app}.log', 'w'))
    url, deadline = f'http://127.0.0.1:{port}', time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(f'{url}/api/status', headers={'Authorization': f'token {token}'}, timeout=2).ok: break
            except requests.ConnectionError: time.sleep(0.3)
        else: pytest.fail(f"jupyter {app} did not start: {(tmp / f'{app}.log').read_text()[-2000:]}")
        yield {'url': url, 'token': token}
    finally:
        proc.terminate()
        proc.wait(30)


def api(lab, endpoint, method='get', token=True, **kw):
    headers = {'Authorization': f"token {lab['token']}"} if token else {}
    return getattr(requests, method)(f"{lab['url']}/mlops-nb/api/{endpoint}", headers=headers, timeout=30, **kw)


def _jupyter(*args) -> str:
    r = subprocess.run([str(BIN / 'jupyter'), *args], capture_output=True, text=True)
    return re.sub(r'\x1b\[[0-9;]*m', '', r.stdout + r.stderr)  # without the colours


def test_installed_and_enabled_by_the_install():
    assert re.search(r'mlops-nb-lab v[\d.]+ enabled OK', _jupyter('labextension', 'list'))
    servers = _jupyter('server', 'extension', 'list')
    assert re.search(r'mlops_nb enabled\s+- Validating mlops_nb\.\.\.\s+mlops_nb [\d.]+ OK', servers)


def test_the_api_needs_the_token_and_stays_inside_the_root(lab):
    assert api(lab, 'state', token=False, params={'path': ''}).status_code in (401, 403)
    assert api(lab, 'run', 'post', token=False, json={'path': '', 'action': 'all'}).status_code in (401, 403)
    assert api(lab, 'promote', 'post', token=False, json={'path': '', 'model': 'weather', 'version': 1}).status_code in (401, 403)
    r = api(lab, 'state', params={'path': '../../etc'})
    assert r.status_code == 400 and "outside the server's root folder" in r.json()['error']
    r = api(lab, 'state', params={'path': 'notebooks/train.ipynb'})
    assert r.status_code == 200 and [s['name'] for s in r.json()['steps']] == STEPS


READ_ONLY = """
from jupyter_server.auth import Authorizer

class ReadOnly(Authorizer):
    "A deployment's policy: this user may look, not change or run anything."
    def is_authorized(self, handler, user, action, resource): return action == 'read'
"""


def test_the_api_obeys_jupyters_authorizer(tmp_path):
    """On a server whose authorizer allows only `read`, the panel's API may show the pipeline but not run it, change
    models.yaml, check parameters or write the report: 403, as for Jupyter's own contents and kernels."""
    root = tmp_path / 'proj'
    write_nb(root / 'a.ipynb', 'n = 1', 'print(n)')
    (root / 'mlops.yaml').write_text('name: ro\nsteps:\n  a: {notebook: a.ipynb}\n')
    (root / 'models.yaml').write_text('models:\n  ro: {}\n')
    (tmp_path / 'readonly_auth.py').write_text(READ_ONLY)
    env = {**os.environ, 'PYTHONPATH': str(tmp_path)}
    with jupyter('server', root, tmp_path, '--ServerApp.authorizer_class=readonly_auth.ReadOnly', env=env) as server:
        def call(method, path, **kw):
            return getattr(requests, method)(f"{server['url']}/{path}", headers={'Authorization': f"token {server['token']}"},
                                             timeout=60, **kw)
        assert call('get', 'api/contents').status_code == 200                       # the policy lets reading through
        assert call('put', 'api/contents/x.txt', json={'type': 'file', 'format': 'text', 'content': 'x'}).status_code == 403
        assert call('get', 'mlops-nb/api/state', params={'path': ''}).status_code == 200
        for endpoint, body in (('run', {'path': '', 'action': 'all'}), ('params', {'path': '', 'step': 'a', 'params': {}}),
                               ('promote', {'path': '', 'model': 'ro', 'version': 1}), ('report', {'path': ''})):
            assert call('post', f'mlops-nb/api/{endpoint}', json=body).status_code == 403, endpoint
        time.sleep(1)
    assert not (root / 'runs').exists() and not (root / 'reports').exists()
    assert (root / 'models.yaml').read_text() == 'models:\n  ro: {}\n'


def _wait(driver, script, timeout=240, what=''):
    "Poll `script` in the page until it returns something truthy."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := driver.execute_script(script): return value
        time.sleep(0.5)
    raise AssertionError(f'timed out waiting for {what or script}')


def _state(driver, step):
    return driver.execute_script(f"return document.querySelector('#mlops-nb-panel g.mlops-node[data-step=\"{step}\"]')"
                                 "?.getAttribute('data-state')")


def _click(driver, css):
    "Click the panel's element `css` once it is there (the panel redraws as the state changes)."
    _wait(driver, f"""const e = document.querySelector('#mlops-nb-panel {css}');
                       if (e && !e.disabled) {{ e.dispatchEvent(new MouseEvent('click', {{bubbles: true}})); return true; }}""",
          60, css)


def _runs(root): return sorted(p.name for p in (root / 'runs').iterdir())


def test_the_panel_in_jupyterlab(lab):
    root, shots = lab['root'], REPO / 'reports' / 'test-output'
    shots.mkdir(parents=True, exist_ok=True)
    with chromium(lab['tmp'] / '.chrome', width=1400, height=1400) as driver:
        driver.get(f"{lab['url']}/lab?token={lab['token']}")
        _wait(driver, "return !!(window.jupyterapp && document.getElementById('mlops-nb-panel'))", what='the panel')
        driver.execute_script("window.jupyterapp.shell.activateById('mlops-nb-panel')")
        # the weather DAG, and the step of the notebook in the active tab
        steps = _wait(driver, "const n = [...document.querySelectorAll('#mlops-nb-panel g.mlops-node')]; "
                              "return n.length ? n.map(g => g.getAttribute('data-step')) : null", what='the DAG')
        assert steps == STEPS and all(_state(driver, s) == 'done' for s in STEPS)
        driver.execute_script("window.jupyterapp.commands.execute('docmanager:open', {path: 'notebooks/train.ipynb'})")
        _wait(driver, "return document.querySelector('#mlops-nb-panel g[data-step=\"train\"] rect.mlops-active') && "
                      "document.querySelector('#mlops-nb-panel .mlops-step[data-step=\"train\"] .mlops-trend')",
              what='train highlighted, its metrics shown')
        driver.save_screenshot(str(shots / 'lab_panel_dag.png'))

        # run `train` from the panel: it runs (cell by cell), then shows done with its metric
        before = _runs(root)
        _click(driver, 'g.mlops-node[data-step="train"]')
        _click(driver, '.mlops-step[data-step="train"] .mlops-run-step')
        _wait(driver, "return document.querySelector('#mlops-nb-panel g[data-state=running]')", what='a step running')
        driver.execute_script("document.querySelector('#mlops-nb-panel g[data-state=running]').scrollIntoView({block: 'start'})")
        driver.save_screenshot(str(shots / 'lab_run_in_progress.png'))
        _wait(driver, "return !document.querySelector('#mlops-nb-panel .mlops-job-running') && "
                      "document.querySelector('#mlops-nb-panel .mlops-job-done')", what='the run to end')
        assert len(_runs(root)) == len(before) + 1
        _wait(driver, "return document.querySelector('#mlops-nb-panel g[data-step=\"train\"]').getAttribute('data-state') "
                      "=== 'done' && document.querySelector('#mlops-nb-panel .mlops-step[data-step=\"train\"] .mlops-metrics')"
                      "?.textContent.includes('val_roc_auc')", what='train done with its metric')
        assert _state(driver, 'evaluate') == 'done'    # same code, parameters and data: nothing after it is behind

        # editing the train notebook's code marks it stale, and the steps after it
        nb_file = root / 'notebooks' / 'train.ipynb'
        nb = nbformat.read(nb_file, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell('print("one more line")'))
        nbformat.write(nb, nb_file)
        _wait(driver, "return document.querySelector('#mlops-nb-panel g[data-step=\"train\"]')"
                      ".getAttribute('data-state') === 'stale'", 60, 'train stale')
        assert [_state(driver, s) for s in STEPS[3:]] == ['stale'] * 3
        _click(driver, 'g.mlops-node[data-step="train"]')
        _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-step[data-step=\"train\"] .mlops-state')"
                      "?.textContent === 'stale: code changed'", 30, 'the reason')

        # an invalid parameter: the runner's message, and no kernel, no run
        before, jobs = _runs(root), len(api(lab, 'state', params={'path': ''}).json()['jobs'])
        field = _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-params input[name=n_estimators]')", 30)
        driver.execute_script("arguments[0].value = 'many'; arguments[0].dispatchEvent(new Event('change'))", field)
        error = _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-params .mlops-param-error')"
                              "?.textContent", 30)
        assert "parameter 'n_estimators' expects int, got 'many'" in error
        _click(driver, '.mlops-params .mlops-run-params')
        time.sleep(2)
        assert _runs(root) == before and len(api(lab, 'state', params={'path': ''}).json()['jobs']) == jobs

        # Promote: the gates of the published version, then models.yaml written as `mlops-nb promote` writes it
        _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-model[data-model=weather] .mlops-gate-table')",
              60, 'the gates')
        driver.execute_script("document.getElementById('mlops-nb-panel').querySelector('.mlops-models').scrollIntoView()")
        option = driver.execute_script("return document.querySelector('#mlops-nb-panel .mlops-model[data-model=weather] "
                                       ".mlops-version option')?.textContent")
        assert option == 'v1 ✓ signed by release@weather', option     # verified against the allowed signers on main
        driver.save_screenshot(str(shots / 'lab_models.png'))
        _click(driver, '.mlops-model[data-model=weather] .mlops-promote')
        _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-promote-result')?.textContent", 60, 'promoted')
        assert 'champion: 1' in (root / 'models.yaml').read_text()

        # a failing step: its error in the panel, and the executed notebook opened at the cell that raised
        nb.cells.append(nbformat.v4.new_code_cell('raise RuntimeError("the forest caught fire")'))
        nbformat.write(nb, nb_file)
        _click(driver, 'g.mlops-node[data-step="train"]')
        _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-step[data-step=\"train\"] .mlops-run-step')", 30)
        _click(driver, '.mlops-step[data-step="train"] .mlops-run-step')
        err = _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-step[data-step=\"train\"] .mlops-error')"
                            "?.textContent", what='the error')
        cell = len(nb.cells)
        assert f"step 'train' failed in notebooks/train.ipynb, cell {cell}" in err and 'the forest caught fire' in err
        _click(driver, '.mlops-step[data-step="train"] .mlops-open-executed')
        active = _wait(driver, "const w = window.jupyterapp.shell.currentWidget; return w && w.context && "
                               "w.context.path.startsWith('runs/') && w.content.activeCell && "
                               "w.content.activeCell.model.sharedModel.getSource()", 60, 'the failed cell')
        assert 'the forest caught fire' in active


# the panel's colours, read in the browser: text against its background, as WCAG measures contrast
CONTRAST = """
const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => v / 255)
  .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
const lum = c => { const [r, g, b] = rgb(c); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const panel = document.getElementById('mlops-nb-panel');
const bg = getComputedStyle(panel).backgroundColor, fg = getComputedStyle(panel.querySelector(arguments[0])).color;
const [hi, lo] = [lum(bg), lum(fg)].sort((a, b) => b - a);
return {background: lum(bg), contrast: (hi + 0.05) / (lo + 0.05)};
"""


def _theme(driver, name: str, light: bool):
    driver.execute_script(f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{name}'}})")
    _wait(driver, f"return document.body.dataset.jpThemeLight === '{str(light).lower()}'", 60, name)
    time.sleep(1)  # the theme's stylesheet applied


def test_the_panel_on_a_diamond_in_both_themes_and_from_the_keyboard(lab):
    """A diamond-shaped project (b and c both need a; d needs both) laid out in layers; the panel readable in the light
    and the dark theme (WCAG contrast of its text); every step reachable and selectable from the keyboard."""
    from selenium.webdriver.common.keys import Keys
    root, shots = lab['root'], REPO / 'reports' / 'test-output'
    shots.mkdir(parents=True, exist_ok=True)
    diamond = root / 'diamond'
    for name in 'abcd': write_nb(diamond / f'{name}.ipynb', 'n = 1', 'print(n)')
    (diamond / 'mlops.yaml').write_text('name: diamond\nsteps:\n  a: {notebook: a.ipynb}\n  b: {notebook: b.ipynb, needs: [a]}\n'
                                        '  c: {notebook: c.ipynb, needs: [a]}\n  d: {notebook: d.ipynb, needs: [b, c]}\n')
    with chromium(lab['tmp'] / '.chrome-themes', width=1400, height=1000) as driver:
        driver.get(f"{lab['url']}/lab?token={lab['token']}")
        _wait(driver, "return !!(window.jupyterapp && document.getElementById('mlops-nb-panel'))", what='the panel')
        driver.execute_script("window.jupyterapp.shell.activateById('mlops-nb-panel')")
        driver.execute_script("window.jupyterapp.commands.execute('docmanager:open', {path: 'diamond/d.ipynb'})")
        at = _wait(driver, "const n = [...document.querySelectorAll('#mlops-nb-panel g.mlops-node')]; "
                           "return n.length === 4 && n.map(g => [g.getAttribute('data-step'), "
                           "g.getAttribute('transform').match(/[\\d.]+/g).map(Number)])", 60, 'the diamond')
        xy = dict(at)
        assert xy['a'][1] < xy['b'][1] == xy['c'][1] < xy['d'][1] and xy['b'][0] != xy['c'][0], xy   # three layers
        _wait(driver, "return document.querySelector('#mlops-nb-panel g[data-step=d] rect.mlops-active') && "
                      "document.querySelector('#mlops-nb-panel .mlops-step[data-step=d]')", 30, 'd active and shown')

        # the keyboard: Tab from the toolbar reaches the graph at the selected step (one tab stop for the graph);
        # arrows move between steps; Enter selects; Tab leaves the graph for the step's own toolbar
        focused = "return document.activeElement.getAttribute('data-step')"
        driver.execute_script("document.querySelector('#mlops-nb-panel .mlops-profile').focus()")
        for _ in range(8):
            if driver.execute_script(focused): break
            driver.switch_to.active_element.send_keys(Keys.TAB)
        assert driver.execute_script(focused) == 'd'
        for key, step in ((Keys.ARROW_UP, 'b'), (Keys.ARROW_RIGHT, 'c'), (Keys.ARROW_UP, 'a'), (Keys.ARROW_DOWN, 'b'),
                          (Keys.ARROW_RIGHT, 'c')):
            driver.switch_to.active_element.send_keys(key)
            assert driver.execute_script(focused) == step, (key, step)
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-step[data-step=c]')", 30, 'c selected')
        driver.switch_to.active_element.send_keys(Keys.TAB)                   # on into the step's own toolbar
        assert 'mlops-run-step' in driver.execute_script("return document.activeElement.className")

        for theme, light, suffix in (('JupyterLab Light', True, 'light'), ('JupyterLab Dark', False, 'dark')):
            _theme(driver, theme, light)
            colours = driver.execute_script(CONTRAST, '.mlops-step h3')
            assert (colours['background'] > 0.5) == light and colours['contrast'] >= 4.5, (theme, colours)
            driver.save_screenshot(str(shots / f'lab_panel_diamond_{suffix}.png'))
        driver.execute_script("window.jupyterapp.commands.execute('docmanager:open', {path: 'notebooks/train.ipynb'})")
        _wait(driver, "return document.querySelectorAll('#mlops-nb-panel g.mlops-node').length === 6", 60, 'the weather DAG')
        _wait(driver, "return document.querySelector('#mlops-nb-panel .mlops-model[data-model=weather] .mlops-gate-table')",
              60, 'the gates')
        colours = driver.execute_script(CONTRAST, '.mlops-model h4')
        assert colours['background'] < 0.5 and colours['contrast'] >= 4.5, colours
        driver.save_screenshot(str(shots / 'lab_panel_weather_dark.png'))
        _theme(driver, 'JupyterLab Light', True)
        driver.save_screenshot(str(shots / 'lab_panel_weather_light.png'))


def test_the_same_extension_in_notebook_7(lab):
    with chromium(lab['tmp'] / '.chrome-nb7', width=1200, height=900) as driver:
        driver.get(f"{lab['url']}/notebooks/notebooks/evaluate.ipynb?token={lab['token']}")
        _wait(driver, "return document.querySelector('.mlops-run-as-step')", 120, 'the toolbar button')
        assert driver.execute_script("return !!document.getElementById('mlops-nb-panel')")
        assert 'Run as pipeline step' in driver.find_element('css selector', '.mlops-run-as-step').text
