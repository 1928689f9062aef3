"""Build the documentation site (`make docs`): every notebook of nbs/ a page, executed in the build, plus an API
reference from the code, rendered by Sphinx + MyST-NB (docs/conf.py says why). Sources are assembled in _proc/
(beside nbs/, so the notebooks' relative paths hold) and the site is written to _docs/ (or --out)."""
import argparse
import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
# the reading order: tutorials first, then the modules as a course, config to scaling out
TUTORIALS = ['getting_started', '16_gitops_on_github', '17_jupyterlab', 'monitoring_and_retraining', '15_scaling_out']
MODULES = ['00_config', '01_params', '01a_imports', '02_runner', '02a_kernels', '02b_shipping', '02c_fork_server', '02d_plan',
           '02e_step', '02f_executors', '02g_cluster', '02h_sweep', '03_tracking', '03a_masking', '04_api',
           '05_data', '06_registry', '06a_gitstore', '06b_gitops', '06c_trust', '06d_bundle', '06e_sync',
           '06f_publish', '07_report', '08_monitor', '09_serve', '09a_canary', '09b_alerting', '09c_container',
           '09d_loader', '09e_telemetry', '10_jupyter', '10a_lab', '12_cli', '12a_scaffold', '12b_local_ci', '13_package']


def exported_module(nb: Path) -> str | None:
    "The module a notebook exports to (its `#| default_exp`), if any."
    for cell in json.loads(nb.read_text())['cells']:
        if m := re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(cell['source']), re.M): return m.group(1)
    return None


def assemble(src: Path):
    "Copy the notebooks into `src`, add the table of contents to the home page and write one API page per module."
    if src.exists(): shutil.rmtree(src)
    shutil.copytree(root / 'nbs', src, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '_*', 'runs', 'reports'))
    shutil.copytree(root / 'nbs' / '_demo', src / '_demo')  # the demo project the runner's notebooks copy
    (src / '_build').mkdir()
    missing = [n for n in TUTORIALS + MODULES if not (src / f'{n}.ipynb').exists()]
    extra = [p.stem for p in src.glob('*.ipynb') if p.stem not in TUTORIALS + MODULES + ['index']]
    if missing or extra: sys.exit(f'docs: .ci/docs.py lists {missing} that nbs/ lacks, and not {extra} that it has')
    api = src / 'api'
    api.mkdir()
    modules = [m for n in MODULES if (m := exported_module(src / f'{n}.ipynb'))]
    for m in modules:
        (api / f'{m}.md').write_text(f'# `mlops_nb.{m}`\n\n```{{eval-rst}}\n.. automodule:: mlops_nb.{m}\n```\n')
    (api / 'index.md').write_text('# API reference\n\nSignatures and parameters, read from the code.\n\n'
                                  '```{toctree}\n:maxdepth: 1\n\n' + '\n'.join(modules) + '\n```\n')
    index = json.loads((src / 'index.ipynb').read_text())
    settings = configparser.ConfigParser()
    settings.read(root / 'settings.ini')
    tree = f"{settings['DEFAULT']['git_url']}/tree/{settings['DEFAULT']['branch']}/"
    for cell in index['cells']:  # README links to repository folders: on the site, to the repository
        cell['source'] = re.sub(r'\]\((?!https?:|#)([^)]+)\)', lambda m: f']({tree}{m.group(1)})'
                                if (root / m.group(1)).exists() else m.group(0), ''.join(cell['source']))
    toc = [('Tutorials', TUTORIALS), ('Modules', MODULES), ('Reference', ['api/index'])]
    index['cells'].append({'cell_type': 'markdown', 'id': 'toc', 'metadata': {}, 'source': '\n'.join(
        f'```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n' + '\n'.join(pages) + '\n```\n' for caption, pages in toc)})
    (src / 'index.ipynb').write_text(json.dumps(index, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--out', type=Path, default=root / '_docs', help='folder of the built site')
    a = ap.parse_args()
    src = root / '_proc'
    assemble(src)
    # images referenced as ../docs/screenshots/x.png from nbs/ are found from _proc/ the same way
    build = src / '_build' / 'html'  # MyST-NB writes executed notebooks beside the build folder: inside _proc/
    # one reader per core: a page waits on its kernel much of the time (measured here, 2 cores: 324 s -> 220 s)
    r = subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(root / 'docs'), '-W', '--keep-going',
                        '-q', '-j', 'auto', str(src), str(build)], cwd=root)
    if r.returncode: sys.exit(f'docs: sphinx-build failed (exit {r.returncode}); the messages above name the page')
    shutil.rmtree(a.out, ignore_errors=True)
    shutil.copytree(build, a.out, ignore=shutil.ignore_patterns('.doctrees', '.buildinfo'))
    print(f'site: {a.out.resolve()}/index.html')


if __name__ == '__main__':
    main()
