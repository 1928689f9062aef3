"""The JupyterLab extension's build (labextension/ -> mlops_nb/labextension/) and its freshness check.

The built bundle is committed, like the package nbdev exports, so that installing mlops_nb needs no node; CI checks it
was built from the sources it ships with (a hash of them, written at build time) and runs the frontend's unit tests.
  python .ci/labextension.py build   # jlpm install + tsc + jupyter-builder, then record the sources' hash
  python .ci/labextension.py check   # fail if the sources changed since the bundle was built
  python .ci/labextension.py test    # the TypeScript unit tests (node --test)
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
src, out = root / 'labextension', root / 'mlops_nb' / 'labextension'
SKIP = {'node_modules', 'lib', 'build', '.yarn'}


def sources_hash() -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in src.rglob('*') if p.is_file() and not SKIP & set(p.relative_to(src).parts)
                    and p.name != 'tsconfig.tsbuildinfo'):
        h.update(f.relative_to(src).as_posix().encode() + b'\0' + f.read_bytes() + b'\0')
    return h.hexdigest()


def jlpm(*args):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, 'PATH': f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([str(bin_dir / 'jlpm'), *args], cwd=src, check=True, env=env)


if __name__ == '__main__':
    what = sys.argv[1] if len(sys.argv) > 1 else 'check'
    if what in ('build', 'test'): jlpm('install', '--immutable')
    if what == 'build':
        jlpm('build')
        (out / 'sources.sha256').write_text(sources_hash() + '\n')
    elif what == 'test': jlpm('test')
    elif (out / 'sources.sha256').read_text().strip() != sources_hash():
        sys.exit('mlops_nb/labextension/ was built from other sources than labextension/: run `make labextension` and commit')
