"""Bad inputs: one clear line naming the file, step, cell or value, exit code 1, and nothing lost."""
import json

import pandas as pd
from conftest import mlops, write_nb

from mlops_nb.data import profile, write_profile

YAML = 'name: bad\nsteps:\n  a: {notebook: a.ipynb}\n  b: {notebook: b.ipynb, needs: [a]}\n'


def _project(tmp_path):
    write_nb(tmp_path / 'a.ipynb', 'n = 1', 'import mlops_nb as mn\nmn.log_metric("n", n)')
    write_nb(tmp_path / 'b.ipynb', None, 'x = 1')
    (tmp_path / 'mlops.yaml').write_text(YAML)
    assert mlops(tmp_path, 'run').returncode == 0
    return tmp_path


def _one_line_error(r, message):
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr


def _intact(root):
    recs = [json.loads(p.read_text()) for p in (root / 'runs').glob('*/*/step.json')]
    assert len(recs) == 2 and all(r['status'] == 'done' for r in recs)


def test_override_for_a_notebook_without_parameters_cell(tmp_path):
    root = _project(tmp_path)
    _one_line_error(mlops(root, 'run', '-p', 'b.x=2'), "b.ipynb: unknown parameter 'x' for step 'b' "
                    "(from command line; declared: none: it has no cell tagged 'parameters')")
    _intact(root)


def test_non_utf8_files(tmp_path):
    root = _project(tmp_path)
    (root / 'b.ipynb').write_bytes(b'{"cells": ["\xff\xfe"]}')
    _one_line_error(mlops(root, 'run'), 'b.ipynb: not a notebook: not UTF-8 text (byte 12)')
    (root / 'mlops.yaml').write_bytes(YAML.encode() + b'# caf\xe9\n')
    _one_line_error(mlops(root, 'validate'), 'mlops.yaml: not UTF-8 text (byte')
    (root / 'mlops.yaml').write_text(YAML)
    (root / 'latin1.csv').write_bytes(b'n\n1\ncaf\xe9\n')
    _one_line_error(mlops(root, 'monitor', '--data', str(root / 'latin1.csv'), '--reference', str(root / 'latin1.csv')),
                    "latin1.csv: not a whylogs profile (DeserializationError)")
    write_profile(profile(pd.DataFrame({'n': [1, 2]})), root / 'ref.whylogs')
    _one_line_error(mlops(root, 'monitor', '--data', str(root / 'latin1.csv'), '--reference', str(root / 'ref.whylogs')),
                    'latin1.csv: not UTF-8 text')
    _intact(root)


def test_huge_output_is_truncated_with_a_note(tmp_path):
    write_nb(tmp_path / 'loud.ipynb', None, "print('x' * 5_000_000)", "print('done')")
    (tmp_path / 'mlops.yaml').write_text('name: loud\nsteps:\n  loud: {notebook: loud.ipynb}\n')
    assert mlops(tmp_path, 'run').returncode == 0
    executed = next((tmp_path / 'runs').glob('*/loud/loud.ipynb'))
    assert executed.stat().st_size < 1_000_000
    text = executed.read_text()
    assert '[mlops_nb: output truncated, 4,800,001 more characters]' in text and 'done' in text
    assert mlops(tmp_path, 'report').returncode == 0
    page = next((tmp_path / 'reports' / 'runs').glob('*/loud.html'))
    assert page.stat().st_size < 2_000_000 and 'output truncated' in page.read_text()
