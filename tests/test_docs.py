"""The documentation site: built by the project's own docs workflow under act in a fresh clone (the Pages steps
skipped), then read in headless Chromium — every internal link and image resolves, the API reference shows
`run_pipeline`'s parameters, the getting-started tutorial shows its executed outputs."""
import functools
import http.server
import json
import shutil
import subprocess
import threading
from urllib.parse import urldefrag, urlparse

import pytest
import requests
from conftest import BIN, REPO, chromium, clean_env, require_service


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    require_service(bool(shutil.which('git')), 'git not installed')
    tmp = tmp_path_factory.mktemp('docs')
    clone, out = tmp / 'clone', tmp / 'site'
    subprocess.run(['git', 'clone', '-q', str(REPO), str(clone)], check=True)
    sha = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=clone, capture_output=True, text=True).stdout.strip()
    (tmp / 'event.json').write_text(json.dumps({'act': True, 'ref': 'refs/heads/main', 'after': sha}))
    installed = sorted((p.name, p.stat().st_mtime) for p in BIN.parent.glob('.installed-*'))
    r = subprocess.run([str(BIN / 'act'), 'push', '-W', '.github/workflows/docs.yml', '-P', 'ubuntu-latest=-self-hosted',
                        '--action-offline-mode', '-e', str(tmp / 'event.json'),
                        '--env', f'VENV={BIN.parent}',     # the installed environment: `make install` finds it current
                        '--env', f'DOCS_OUT={out}'], cwd=clone, capture_output=True, text=True, timeout=2400,
                       env=clean_env())  # not a store URI another test exported: the notebooks use their own
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    assert 'Job succeeded' in log and 'deploy-pages' not in log and 'upload-pages-artifact' not in log
    assert (out / 'index.html').is_file()
    # the environment was used as installed, not reinstalled from the clone (which act deletes afterwards)
    assert sorted((p.name, p.stat().st_mtime) for p in BIN.parent.glob('.installed-*')) == installed != []
    return out


@pytest.fixture(scope='module')
def url(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}/'
    server.shutdown()


def test_every_internal_link_and_image_resolves(url, tmp_path):
    with chromium(tmp_path / 'profile') as driver:
        todo, seen, checked, broken = ['index.html'], set(), {}, []
        while todo:
            page = todo.pop()
            seen.add(page)
            driver.get(url + page)
            images = "return [...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0])"
            for src, ok in driver.execute_script(images):
                if not ok: broken.append((page, 'image', src))
            for href in driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)"):
                target = urldefrag(href).url
                if not target.startswith(url): continue  # the repository and other sites: not ours to serve
                if target not in checked: checked[target] = requests.get(target, timeout=10).status_code
                if checked[target] != 200: broken.append((page, 'link', href))
                path = urlparse(target).path.lstrip('/') or 'index.html'
                if path.endswith('.html') and path not in seen and path not in todo and '_sources' not in path: todo.append(path)
    print(f'{len(seen)} pages, {len(checked)} internal targets')
    assert len(seen) > 40 and not broken, broken


def test_api_page_shows_run_pipeline_parameters_and_the_tutorial_its_outputs(url, tmp_path):
    from selenium.webdriver.common.by import By
    with chromium(tmp_path / 'profile') as driver:
        driver.get(url + 'api/runner.html')
        entry = driver.find_element(By.ID, 'mlops_nb.runner.run_pipeline').find_element(By.XPATH, '..')
        text = entry.text
        for param, doc in (('from_step', 're-run this step and everything after it'), ('profile', 'a parameter profile'),
                           ('executor', 'local, warm or dask')):
            assert f'{param} – {doc}' in text or f'{param} -- {doc}' in text, text[:2000]
        driver.get(url + 'getting_started.html')
        outputs = [e.text for e in driver.find_elements(By.CSS_SELECTOR, '.cell_output')]
        assert any('nothing to run: all 6 steps are up to date' in o for o in outputs), outputs
        assert any('train: running' in o and 'features: cached' in o for o in outputs), outputs


@pytest.mark.parametrize('notebook', ['02_runner', '04_api', '06_registry', '09_serve'])
def test_every_exported_function_has_an_example_after_it(notebook):
    "nbdev's rhythm: an exported function, then a cell (not exported, so run by nbdev_test and the docs) that uses it."
    import re
    cells = [(''.join(c['source']), '#| export' in ''.join(c['source']))
             for c in json.loads((REPO / 'nbs' / f'{notebook}.ipynb').read_text())['cells'] if c['cell_type'] == 'code']
    defined = [(i, name) for i, (src, exported) in enumerate(cells) if exported
               for name in re.findall(r'^(?:async )?def ([a-z]\w*)\(', src, re.M)]
    assert defined
    lonely = [name for i, name in defined if not any(re.search(rf'\b{name}\b', src) for src, exported in cells[i + 1:]
                                                     if not exported)]
    assert not lonely, f'{notebook}: no example after {lonely}'


def test_every_exported_parameter_is_documented():
    """Docments, as nbdev documents parameters: every parameter of every exported function, class and dataclass field
    has its comment (the API pages show them). Click commands document their options with `help=` instead."""
    import importlib
    import inspect
    import pkgutil

    import click
    from fastcore.docments import docments

    import mlops_nb
    undocumented = []
    for m in pkgutil.iter_modules(mlops_nb.__path__):
        mod = importlib.import_module(f'mlops_nb.{m.name}')
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name)
            if not callable(obj) or isinstance(obj, click.Command) or getattr(obj, '__origin__', None): continue
            try: docs = docments(obj, full=False)
            except (TypeError, ValueError, OSError): continue  # no signature or no source (a builtin base, a typing alias)
            var_kw = {p.name for p in inspect.signature(obj).parameters.values() if p.kind is p.VAR_KEYWORD}
            # fastcore does not read a `**kw` comment that follows keyword-only parameters: those are checked by eye
            undocumented += [f'{m.name}.{name}({p})' for p, doc in docs.items()
                             if p not in ('self', 'return', *var_kw) and not doc]
    assert not undocumented, undocumented
    helpless = [f'{cmd.name} {p.name}' for cmd in mlops_nb.cli.cli.commands.values() for p in cmd.params
                if isinstance(p, click.Option) and not p.help]
    assert not helpless, helpless
