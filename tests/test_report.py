"""The reports/ site in a real headless Chromium, and the pull-request summary, on two runs of the weather example."""
import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from conftest import BIN, REPO, chromium, mlops
from mlflow.tracking import MlflowClient

SECRET = 's3cr3t-weather-db-pw-42'


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The weather example run twice (a notebook leaks a planted secret), then `mlops-nb report --summary`."
    root = tmp_path_factory.mktemp('r') / 'weather'
    assert subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root)], capture_output=True).returncode == 0
    nb_file = root / 'notebooks' / 'ingest.ipynb'
    nb = nbformat.read(nb_file, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('import os\nprint("connecting with", os.environ["WEATHER_DB_PASSWORD"])'))
    nbformat.write(nb, nb_file)
    env = {**os.environ, 'WEATHER_DB_PASSWORD': SECRET}
    for args in (['--profile', 'pr'], ['--profile', 'pr', '-p', 'train.n_estimators=20']):
        r = mlops(root, 'run', *args, env=env)
        assert r.returncode == 0, r.stderr
    summary_file = root / 'step_summary.md'
    r = mlops(root, 'report', '--summary', env={**env, 'GITHUB_STEP_SUMMARY': str(summary_file)})
    assert r.returncode == 0, r.stderr
    return root, summary_file


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag == 'img' and a.get('src') and not a['src'].startswith('data:'): self.links.append(a['src'])


def _crawl(index: Path) -> set[Path]:
    "Every local page reachable from `index`; fails on a link to a missing file."
    seen, todo = set(), [index]
    while todo:
        page = todo.pop()
        if page in seen: continue
        seen.add(page)
        parser = _Links()
        parser.feed(page.read_text())
        for href in parser.links:
            if urlparse(href).scheme or href.startswith('#'): continue
            target = (page.parent / href.split('#')[0]).resolve()
            assert target.is_file(), f'{page}: broken link {href}'
            if target.suffix == '.html': todo.append(target)
    return seen


def test_secret_is_scrubbed_everywhere(site):
    root, summary_file = site
    executed = next((root / 'runs').glob('*/ingest/ingest.ipynb')).read_text()
    assert SECRET not in executed and 'connecting with [redacted]' in executed  # the notebook printed it; masked on save
    for f in (root / 'reports').rglob('*'):
        if f.is_file(): assert SECRET not in f.read_text(errors='ignore'), f
    assert SECRET not in summary_file.read_text()
    assert '[redacted]' in next((root / 'reports' / 'runs').glob('*/ingest.html')).read_text()


def test_all_links_resolve(site):
    root, _ = site
    pages = _crawl(root / 'reports' / 'index.html')
    runs = sorted(p.name for p in (root / 'runs').iterdir())
    assert {root / 'reports' / 'runs' / r / 'index.html' for r in runs} <= pages
    assert len([p for p in pages if p.name == 'evaluate.html']) == 2


def test_site_in_headless_chromium(site):
    from selenium.webdriver.common.by import By
    root, _ = site
    with chromium(root / '.chrome') as driver:
        driver.get((root / 'reports' / 'index.html').as_uri())
        runs = sorted(p.name for p in (root / 'runs').iterdir())
        rows = driver.find_elements(By.CSS_SELECTOR, 'table tr td:first-child a')
        assert sorted(r.text for r in rows) == runs
        img = driver.find_element(By.ID, 'history')
        assert driver.execute_script('return arguments[0].complete && arguments[0].naturalWidth', img) > 100
        shots = REPO / 'reports' / 'test-output'
        shots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shots / 'report_index.png'))
        rows[0].click()  # the newest run's page, then a rendered notebook with its code toggle
        assert 'run ' in driver.title
        driver.find_element(By.LINK_TEXT, 'evaluate.ipynb').click()
        toggle = driver.find_element(By.ID, 'mlops-toggle')
        toggle.click()
        assert toggle.text == 'show code'
        assert driver.execute_script("return document.querySelectorAll('img[src^=\"data:image/png\"]').length") >= 2
        driver.save_screenshot(str(shots / 'report_notebook.png'))
        errors = [e for e in driver.get_log('browser') if e['level'] == 'SEVERE']
        assert errors == [], errors


def test_summary_shows_regression_and_failed_gate(site):
    root, summary_file = site
    md = summary_file.read_text()
    assert md == (root / 'reports' / 'pr' / 'summary.md').read_text()
    assert '| roc_auc |' in md and '| f1 |' in md and 'champion (none yet)' in md
    # Make version 1 a champion that was much better: the latest run is now a regression.
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(uri, uri)
    client.set_model_version_tag('weather', '1', 'metric.f1', '0.99')
    client.set_registered_model_alias('weather', 'champion', '1')  # what reconcile does after a promotion
    assert mlops(root, 'report', '--summary').returncode == 0
    md = (root / 'reports' / 'pr' / 'summary.md').read_text()
    row = next(line for line in md.splitlines() if line.startswith('| f1 |'))
    assert '0.9900' in row and '▼ -' in row
    gate = next(line for line in md.splitlines() if line.startswith('| f1 | `>= champion - 0.01`'))
    assert '❌ FAIL' in gate and '>= 0.98' in gate
    run_id = sorted(p.name for p in (root / 'runs').iterdir())[-1]
    assert f'reports/runs/{run_id}/index.html' in md
    assert json.loads((root / 'runs' / run_id / 'run.json').read_text())['status'] == 'done'


@pytest.mark.parametrize('width', [1280, 390])
def test_run_page_reads_like_a_model_review_on_a_desktop_and_a_phone(site, width):
    "Metrics against the champion, the figures, the model card, data profiles and lineage; nothing overflows at 390 px."
    from selenium.webdriver.common.by import By
    root, _ = site
    uri = f"sqlite:///{root / 'mlruns.db'}"
    MlflowClient(uri, uri).set_registered_model_alias('weather', 'champion', '1')
    assert mlops(root, 'report').returncode == 0
    latest = sorted(json.loads(f.read_text())['run_id'] for f in (root / 'runs').glob('*/run.json')
                    if json.loads(f.read_text()).get('kind', 'run') == 'run' and
                    json.loads(f.read_text())['status'] == 'done')[-1]
    shots = REPO / 'reports' / 'test-output'
    shots.mkdir(parents=True, exist_ok=True)
    with chromium(root / f'.chrome-{width}', width=width, height=2400 if width < 600 else 1600) as driver:
        for page in (root / 'reports' / 'runs' / latest / 'index.html', root / 'reports' / 'index.html'):
            driver.get(page.as_uri())
            images = driver.execute_script("return [...document.images].map(i => [i.src.split('/').pop(), i.complete && "
                                           "i.naturalWidth > 0 && i.getBoundingClientRect().width > 0])")
            assert images and [name for name, shown in images if not shown] == []
            assert driver.execute_script('return document.documentElement.scrollWidth - window.innerWidth') <= 0
            driver.save_screenshot(str(shots / f"report_{'run' if 'runs' in str(page) else 'index'}_{width}.png"))
        driver.get((root / 'reports' / 'runs' / latest / 'index.html').as_uri())
        card = driver.find_element(By.ID, 'model-card')
        assert card.is_displayed() and 'Intended use' in card.text and 'Known limits' in card.text
        vs = driver.find_element(By.ID, 'vs-champion')
        assert vs.is_displayed() and 'champion weather v1' in vs.text and 'roc_auc' in vs.text
        assert driver.find_elements(By.CSS_SELECTOR, '#vs-champion .better, #vs-champion .worse')  # deltas coloured
        assert {'roc_curve', 'calibration', 'partial_dependence', 'confusion_matrix'} <= {
            i.get_attribute('alt').split()[-1] for i in driver.find_elements(By.CSS_SELECTOR, 'figure img')}
        assert 'data/train.parquet' in driver.find_element(By.TAG_NAME, 'body').text     # data profiles
        assert 'data hash' in driver.find_element(By.ID, 'lineage').text


def test_failed_step_in_summary_and_page(site):
    root, _ = site
    r = mlops(root, 'run', 'validate', '--profile', 'pr', '-p', 'validate.max_precipitation=5')
    assert r.returncode == 1
    assert mlops(root, 'report', '--summary').returncode == 0
    md = (root / 'reports' / 'pr' / 'summary.md').read_text()
    assert "**❌ step `validate` failed** in `notebooks/validate.ipynb`, cell 4: `ConstraintsFailed`" in md
    assert 'precipitation is in range [0,5.0]' in md
    run_id = sorted(p.name for p in (root / 'runs').iterdir())[-1]
    page = (root / 'reports' / 'runs' / run_id / 'validate.html').read_text()
    assert 'celltag_failed' in page
