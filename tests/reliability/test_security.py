"""Security: parameters cannot reach outside the project or carry secrets; secrets never reach a file we write."""
import base64
import json
import os
import shutil
import time

from conftest import chromium, mlops, write_nb


def test_path_parameter_cannot_escape_the_project(tmp_path):
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'in.txt').write_text('ok')
    write_nb(tmp_path / 'read.ipynb', "path = 'data/in.txt'", 'import mlops_nb as mn\nprint(mn.input_path(path).read_text())')
    (tmp_path / 'mlops.yaml').write_text('name: sec\nsteps:\n  read: {notebook: read.ipynb}\n')
    assert mlops(tmp_path, 'run').returncode == 0
    r = mlops(tmp_path, 'run', '-p', 'path=../../etc/passwd')
    assert r.returncode == 1
    assert "MlopsError: path '../../etc/passwd' leaves the project folder" in r.stderr
    assert 'root:' not in r.stderr  # nothing of the file was read


def test_secret_looking_parameters_are_refused(tmp_path):
    write_nb(tmp_path / 'x.ipynb', "api_token = ''", 'x = 1')
    (tmp_path / 'mlops.yaml').write_text('name: sec\nsteps:\n  x: {notebook: x.ipynb}\n')
    r = mlops(tmp_path, 'run', '-p', 'api_token=hunter2-secret')
    assert r.returncode == 1
    assert "parameter 'api_token' looks like a secret: read it from the environment instead" in r.stderr
    assert not (tmp_path / 'runs').exists()  # never written into an executed notebook


SECRETS = {'WEIRD_TOKEN': 'pässwörd-ü-42', 'DB_PASSWORD': 'a<b>&c"d-9', 'SOME_PASS': 'plain-pass-77',
           'DATABASE_URL': 'postgresql://app:url-pw-55@db.internal/app'}


def _spellings(value: str) -> set[str]:
    import html
    import json
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], html.escape(value),
            html.escape(value, quote=False)}


def test_secrets_are_masked_in_every_spelling_in_notebooks_records_reports_and_mlflow(tmp_path):
    "Non-ASCII, HTML-escaped (a DataFrame), *_PASS, a password inside a URI: none reaches any file we write."
    write_nb(tmp_path / 'leak.ipynb', None,
             'import os\nimport pandas as pd\nimport mlops_nb as mn',
             'print(os.environ["WEIRD_TOKEN"], os.environ["SOME_PASS"], os.environ["DATABASE_URL"])',
             'pd.DataFrame({"password": [os.environ["DB_PASSWORD"]]})',
             'mn.log_params({"conn": os.environ["DATABASE_URL"], "pw": os.environ["DB_PASSWORD"]})\nmn.log_metric("x", 1)')
    (tmp_path / 'mlops.yaml').write_text('name: sec\nsteps:\n  leak: {notebook: leak.ipynb}\n')
    env = {**os.environ, **SECRETS}
    assert mlops(tmp_path, 'run', env=env).returncode == 0
    assert mlops(tmp_path, 'report', env=env).returncode == 0
    step = next((tmp_path / 'runs').glob('*/leak'))
    assert 'tracking_uri' not in json.loads((step / 'context.json').read_text())  # the kernel derives it itself
    executed = (step / 'leak.ipynb').read_text(encoding='utf-8')
    assert 'postgresql://app:[redacted]@db.internal/app' in executed and '[redacted]' in executed
    secret_parts = [*SECRETS.values()][:3] + ['url-pw-55']
    leaks = []
    for f in [*tmp_path.rglob('*.ipynb'), *tmp_path.rglob('*.json'), *tmp_path.rglob('*.html'), *tmp_path.rglob('*.md')]:
        if f.parent == tmp_path: continue  # the source notebook itself
        text = f.read_text(encoding='utf-8', errors='replace')
        leaks += [(f.name, s) for v in secret_parts for s in _spellings(v) if s in text]
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    params = [p for r in MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name('sec').experiment_id])
              for p in r.data.params.values()]
    leaks += [('mlflow params', s) for v in secret_parts for s in _spellings(v) for p in params if s in p]
    assert leaks == []


def test_scripts_in_notebook_outputs_do_not_run_in_the_report(tmp_path):
    "HTML with <script>, a Javascript output, SVG with script, an onerror handler: none runs; table and figure stay."
    write_nb(tmp_path / 'xss.ipynb', None,
             'from IPython.display import HTML, Javascript, SVG, display\nimport pandas as pd\nimport matplotlib.pyplot as plt',
             'display(HTML("<b>bold</b><script>window.PWNED_HTML = 1</script><img src=x onerror=\\"window.PWNED_IMG = 1\\">"))',
             'display(Javascript("window.PWNED_JS = 1"))',
             'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg"><script>window.PWNED_SVG = 1</script>'
             '<circle r="5"/></svg>\'))',
             'pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})',
             'plt.plot([1, 2, 3]); plt.show()')
    (tmp_path / 'mlops.yaml').write_text('name: xss\nsteps:\n  xss: {notebook: xss.ipynb}\n')
    assert mlops(tmp_path, 'run').returncode == 0
    assert mlops(tmp_path, 'report').returncode == 0
    page = next((tmp_path / 'reports' / 'runs').glob('*/xss.html'))
    with chromium(tmp_path / '.chrome') as driver:
        driver.get(page.as_uri())
        time.sleep(0.5)
        ran = driver.execute_script('return [window.PWNED_HTML, window.PWNED_IMG, window.PWNED_JS, window.PWNED_SVG]')
        assert ran == [None, None, None, None]
        assert driver.execute_script("return document.querySelectorAll('table.dataframe td').length") == 4  # the table
        assert driver.execute_script("return [...document.images].filter(i => i.src.startsWith('data:image/png') "
                                     "&& i.naturalWidth > 100).length") == 1                               # the figure
        assert 'bold' in driver.page_source


def test_records_and_markdown_cannot_put_live_markup_or_local_files_in_the_site(tmp_path):
    """What a pulled bundle carries into the site (a run id, run and step statuses with markup), a markdown link to
    `javascript:` and markdown images of the project's `.env` and of a file outside the notebook's folder: in the
    pages they are text or gone, nothing runs in Chromium, and no page holds the files' contents."""
    secret = b'DB_PASSWORD=correct-horse-battery\n'
    (tmp_path / '.env').write_bytes(secret)
    (tmp_path / 'nb' / 'logo.png').parent.mkdir()
    (tmp_path / 'outside.png').write_bytes(secret)                       # named like a picture, outside nb/
    write_nb(tmp_path / 'nb' / 'md.ipynb', None, 'print(1)',
             markdown='[click](javascript:window.PWNED_LINK=1) ![env](../.env) ![up](../outside.png)')
    (tmp_path / 'mlops.yaml').write_text('name: md\nsteps:\n  md: {notebook: nb/md.ipynb}\n')
    assert mlops(tmp_path, 'run').returncode == 0
    run = next((tmp_path / 'runs').iterdir())
    evil = tmp_path / 'runs' / '20990101-000000-1"><img src=x onerror="window.PWNED_ID=1">'
    shutil.copytree(run, evil)
    info = json.loads((evil / 'run.json').read_text())
    (evil / 'run.json').write_text(json.dumps({**info, 'run_id': evil.name, 'status': '<script>window.PWNED_RUN=1</script>'}))
    st = json.loads((evil / 'md' / 'step.json').read_text())
    (evil / 'md' / 'step.json').write_text(json.dumps({**st, 'run_id': evil.name, 'source_dir': str(evil / 'md'),
                                                       'status': '<img src=x onerror="window.PWNED_STEP=1">'}))
    assert mlops(tmp_path, 'report').returncode == 0
    pages = sorted((tmp_path / 'reports').rglob('*.html'))
    assert len(pages) >= 4
    for page in pages:
        text = page.read_text()
        assert 'javascript:' not in text.lower(), page
        assert base64.b64encode(secret).decode()[:24] not in text and 'correct-horse' not in text, page
    with chromium(tmp_path / '.chrome') as driver:
        for page in pages:
            driver.get(page.as_uri())
            time.sleep(0.3)
            ran = driver.execute_script('return [window.PWNED_LINK, window.PWNED_ID, window.PWNED_RUN, window.PWNED_STEP]')
            assert ran == [None] * 4, (page, ran)
            schemes = driver.execute_script("return [...document.querySelectorAll('[href], [src]')]"
                                            ".map(e => new URL(e.href || e.src, location.href).protocol)")
            assert set(schemes) <= {'file:', 'https:', 'data:'}, (page, set(schemes))   # no javascript: anywhere


def test_a_step_name_cannot_leave_the_project(tmp_path):
    project = tmp_path / 'project'
    write_nb(project / 'a.ipynb', None, 'x = 1')
    (project / 'mlops.yaml').write_text('name: sec\nsteps:\n  ../../../escape/pwn: {notebook: a.ipynb}\n')
    r = mlops(project, 'run')
    assert r.returncode == 1 and "step name '../../../escape/pwn' cannot be a folder name" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['project'] and not (project / 'runs').exists()


def test_a_committed_symlink_cannot_take_a_write_outside(tmp_path):
    project, outside = tmp_path / 'project', tmp_path / 'outside'
    outside.mkdir()
    write_nb(project / 'w.ipynb', None, 'import mlops_nb as mn\nmn.output_path("data/out.txt").write_text("x")')
    (project / 'data').symlink_to(outside)
    (project / 'mlops.yaml').write_text('name: sec\nsteps:\n  w: {notebook: w.ipynb, outputs: [data/out.txt]}\n')
    r = mlops(project, 'run')
    assert r.returncode == 1 and f"step 'w': outputs path 'data/out.txt' leads outside the project (to {outside}" in r.stderr
    assert list(outside.iterdir()) == []


def _markdown_tokens(md: str):
    from markdown_it import MarkdownIt
    return [t for t in MarkdownIt('commonmark').enable('table').parse(md) for t in [t, *(t.children or [])]]


def _cells_per_row(tokens) -> list[int]:
    out, n = [], 0
    for t in tokens:
        if t.type == 'tr_open': n = 0
        elif t.type in ('td_open', 'th_open'): n += 1
        elif t.type == 'tr_close': out.append(n)
    return out


def test_untrusted_text_cannot_inject_markdown_into_summaries(tmp_path):
    "An error message closing the code fence, a metric and a column named like HTML: all stay text in the summaries."
    payload = '```\n# Injected heading\n<img src=x onerror=alert(1)> [click](https://evil.example)'
    write_nb(tmp_path / 'bad.ipynb', None, 'import mlops_nb as mn\nmn.log_metric("<img src=x onerror=alert(2)>|x", 1)',
             f'raise ValueError({payload!r})')
    (tmp_path / 'mlops.yaml').write_text('name: md\nsteps:\n  bad: {notebook: bad.ipynb}\n')
    assert mlops(tmp_path, 'run').returncode == 1
    assert mlops(tmp_path, 'report', '--summary').returncode == 0
    tokens = _markdown_tokens((tmp_path / 'reports' / 'pr' / 'summary.md').read_text())
    assert [t.content for t in tokens if t.type == 'inline' and t.map and 'Injected' in t.content] == []
    assert not [t for t in tokens if t.type in ('html_block', 'html_inline', 'link_open', 'heading_open') and
                ('onerror' in t.content or t.attrGet('href') == 'https://evil.example' or 'Injected' in t.content)]
    assert any(t.type == 'fence' and 'Injected heading' in t.content for t in tokens)   # still shown, as code
    assert set(_cells_per_row(tokens)) == {4}                                            # the metric stays in its cell
    (tmp_path / 'new.csv').write_text('"<img src=x onerror=alert(3)>|a",b\n1,2\n')
    (tmp_path / 'ref.csv').write_text('"<img src=x onerror=alert(3)>|a",b\n5,6\n')
    from mlops_nb.data import profile_file, write_profile
    write_profile(profile_file(tmp_path / 'ref.csv')[0], tmp_path / 'ref.whylogs')
    summary = tmp_path / 'summary.md'
    mlops(tmp_path, 'monitor', '--data', str(tmp_path / 'new.csv'), '--reference', str(tmp_path / 'ref.whylogs'),
          env={**os.environ, 'GITHUB_STEP_SUMMARY': str(summary)})
    tokens = _markdown_tokens(summary.read_text())
    assert not [t for t in tokens if t.type in ('html_block', 'html_inline') and 'onerror' in t.content]
    assert set(_cells_per_row(tokens)) == {5} and '&lt;img src=x onerror=alert(3)&gt;' in summary.read_text()


BOMB = """
import sys
from pathlib import Path
from mlops_nb.gitstore import GitError, Repo
repo, dest = Repo.open(Path(sys.argv[1])), Path(sys.argv[2])
try: repo.extract('refs/tags/bomb', dest, max_bytes=int(sys.argv[3]))
except GitError as e: print('refused:', e)
# VmHWM: this process's own peak (getrusage's ru_maxrss keeps the peak of the pytest process it was forked from)
print('peak MB', next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')) // 1024)
"""


def test_a_bundle_that_unpacks_huge_is_refused_before_a_byte_is_written_and_extraction_streams(tmp_path):
    """A tag whose tree compresses 200 MB of zeros into a few hundred KB of git objects: over the size limit it is
    refused in one line and nothing is written; under it, it is extracted with memory flat (streamed, not read
    whole: 425 MB peak before)."""
    import subprocess
    import sys

    from conftest import git
    repo = tmp_path / 'repo'
    git(tmp_path, 'init', '-q', '-b', 'main', str(repo))
    with open(repo / 'model.bin', 'wb') as f: f.truncate(200 << 20)
    git(repo, 'add', 'model.bin')
    git(repo, '-c', 'user.name=a', '-c', 'user.email=a@b', 'commit', '-qm', 'bomb')
    git(repo, 'tag', 'bomb')
    objects = sum(f.stat().st_size for f in (repo / '.git' / 'objects').rglob('*') if f.is_file())
    assert objects < 2 << 20, objects

    def extract(limit):
        r = subprocess.run([sys.executable, '-c', BOMB, str(repo), str(tmp_path / f'out-{limit}'), str(limit)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout
    out = extract(100 << 20)
    assert 'refused: refs/tags/bomb: 1 file, 209,715,200 bytes: over the limit of 20,000 files and 104,857,600 bytes; ' \
           'nothing was extracted' in out, out
    assert not (tmp_path / f'out-{100 << 20}').exists()
    out = extract(300 << 20)
    assert (tmp_path / f'out-{300 << 20}' / 'model.bin').stat().st_size == 200 << 20
    assert int(out.split('peak MB')[1]) < 150, out


def test_the_blob_cache_holds_only_what_hashes_to_its_name(tmp_path):
    """A file put under a hash it does not have is not kept; a cached blob altered on disk is noticed when read and
    fetched again from the store (real MLflow artifact repository, the worker's code path)."""
    import pytest
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from mlops_nb.config import MlopsError
    from mlops_nb.shipping import BlobStore, sha256_file
    store = BlobStore(LocalArtifactRepository(str(tmp_path / 'server')), tmp_path / 'cache')
    (tmp_path / 'days.csv').write_text('date,rain\n2012-01-01,0\n')
    (tmp_path / 'evil.csv').write_text('date,rain\n2012-01-01,1\n')
    sha = store.put(tmp_path / 'days.csv')
    with pytest.raises(MlopsError, match='does not hash to'):
        store.put(tmp_path / 'evil.csv', sha, keep=True)             # claims the good file's hash
    assert not store.local(sha).exists()
    store.get(sha)                                                   # cached now
    store.local(sha).write_text('date,rain\n2012-01-01,1\n')          # altered in the cache
    out = store.get(sha, tmp_path / 'out.csv')
    assert sha256_file(out) == sha and sha256_file(store.local(sha)) == sha


def test_a_page_with_a_diagram_loads_mermaid_pinned_by_its_hash_and_nothing_else_remote(tmp_path):
    "nbconvert's pages import Mermaid (and MathJax) from a CDN unpinned: ours load only Mermaid, by URL and sha384."
    import re

    import nbformat

    from mlops_nb.report import render_notebook
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('```mermaid\ngraph TD; A-->B\n```\n$x^2$')])
    nbformat.write(nb, tmp_path / 'd.ipynb')
    page = render_notebook(tmp_path / 'd.ipynb', tmp_path / 'd.html', []).read_text()
    remote = re.findall(r'<script[^>]*src="(https?://[^"]+)"[^>]*>', page)
    assert remote == ['https://cdn.jsdelivr.net/npm/mermaid@11.10.0/dist/mermaid.min.js'], remote
    tag = re.search(r'<script[^>]*mermaid\.min\.js[^>]*>', page)[0]
    assert 'integrity="sha384-' in tag and 'crossorigin="anonymous"' in tag
    assert 'import(' not in page and 'cdnjs' not in page                     # no unpinned module imports left
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('no diagram')])
    nbformat.write(plain, tmp_path / 'p.ipynb')
    assert '<script src=' not in render_notebook(tmp_path / 'p.ipynb', tmp_path / 'p.html', []).read_text()
