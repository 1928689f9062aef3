"""Render README.md from nbs/index.ipynb (what `nbdev_readme` does, without Quarto, which cannot be installed here).
With --check, exit 1 if README.md is out of date instead of writing it."""
import sys
from pathlib import Path

from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parent.parent
text, _ = MarkdownExporter().from_filename(str(root / 'nbs' / 'index.ipynb'))
text = text.strip() + '\n'
readme = root / 'README.md'
if '--check' in sys.argv:
    if readme.read_text() != text:
        sys.exit('README.md is out of date with nbs/index.ipynb: run `make export` (or python .ci/readme.py) and commit')
else:
    readme.write_text(text)
