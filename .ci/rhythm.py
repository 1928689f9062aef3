"""The shape of the code, measured (issue #44): module sizes, longest functions, and nbdev's rhythm per notebook.

Prints a table; with --check, exits 1 where a limit is crossed: a module over 450 lines, a function over 60, an
exported cell over 40 lines or with more than 4 definitions, a line over 120 characters, fewer than 0.8 asserting
examples per exported cell overall or 0.5 in any notebook."""
import argparse
import ast
import json
import re
import statistics
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ASSERTS = re.compile(r'^\s*(assert |test_\w+\(|test_eq|test_fail)', re.M)
LIMITS = {'module_lines': 450, 'function_lines': 60, 'cell_lines': 40, 'cell_defs': 4, 'line_chars': 120,
          'examples': 0.8, 'examples_per_notebook': 0.5}


def notebook_rhythm(nb: Path) -> dict:
    cells = [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
    src = [''.join(c['source']) for c in cells]
    exported = [s for s in src if re.match(r'#\|\s*export', s)]
    examples = [s for s in src if not re.match(r'#\|\s*(export|default_exp|hide)', s) and ASSERTS.search(s)]
    sizes = [len(s.splitlines()) - 1 for s in exported]
    defs = [len(re.findall(r'^(?:def|class|async def) ', s, re.M)) for s in exported]
    long = sum(len(line) > LIMITS['line_chars'] for s in src for line in s.splitlines())
    return {'notebook': nb.stem, 'exported': len(exported), 'examples': len(examples),
            'median': statistics.median(sizes) if sizes else 0, 'max': max(sizes, default=0),
            'defs': max(defs, default=0), 'long_lines': long, 'lines': sum(len(s.splitlines()) for s in src)}


def functions(path: Path):
    "(lines, name) of every function of a module."
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.end_lineno - node.lineno + 1, f'{path.stem}.{node.name}'


def main():
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument('--check', action='store_true', help='exit 1 where a limit is crossed')
    args = a.parse_args()
    rows = [notebook_rhythm(nb) for nb in sorted((root / 'nbs').glob('*.ipynb'))]
    rows = [r for r in rows if r['exported']]
    print(f"{'notebook':22} {'cells':>5} {'examples':>8} {'per cell':>8} {'median':>6} {'max':>4} {'defs':>4} {'>120':>5}")
    for r in rows:
        print(f"{r['notebook']:22} {r['exported']:5} {r['examples']:8} {r['examples'] / r['exported']:8.2f} "
              f"{r['median']:6.1f} {r['max']:4} {r['defs']:4} {r['long_lines']:5}")
    cells, examples = sum(r['exported'] for r in rows), sum(r['examples'] for r in rows)
    big = sum(1 for nb in sorted((root / 'nbs').glob('*.ipynb'))
              for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code'
              and re.match(r'#\|\s*export', ''.join(c['source'])) and len(c['source']) - 1 >= 30)
    lines = sum(r['lines'] for r in rows)
    long = sum(r['long_lines'] for r in rows)
    modules = sorted(((len(p.read_text().splitlines()), p.stem) for p in (root / 'mlops_nb').glob('*.py')
                      if p.stem != '_modidx'), reverse=True)
    funcs = sorted((f for p in (root / 'mlops_nb').glob('*.py') for f in functions(p)), reverse=True)
    print(f"\n{cells} exported cells, {examples} asserting examples ({examples / cells:.2f} per cell), "
          f"{big} cells of 30+ lines ({100 * big / cells:.1f} %), {long} of {lines} lines over "
          f"{LIMITS['line_chars']} characters ({100 * long / lines:.1f} %)")
    print(f"package: {sum(n for n, _ in modules)} lines in {len(modules)} modules; longest modules: "
          + ', '.join(f'{m} {n}' for n, m in modules[:5]))
    print('longest functions: ' + ', '.join(f'{f} {n}' for n, f in funcs[:6]))
    if not args.check: return
    problems = [f'module {m}: {n} lines' for n, m in modules if n > LIMITS['module_lines']]
    problems += [f'function {f}: {n} lines' for n, f in funcs if n > LIMITS['function_lines']]
    for r in rows:
        if r['max'] > LIMITS['cell_lines']: problems.append(f"{r['notebook']}: an exported cell of {r['max']} lines")
        if r['defs'] > LIMITS['cell_defs']: problems.append(f"{r['notebook']}: a cell with {r['defs']} definitions")
        if r['long_lines']: problems.append(f"{r['notebook']}: {r['long_lines']} lines over {LIMITS['line_chars']}")
        if r['examples'] / r['exported'] < LIMITS['examples_per_notebook']:
            problems.append(f"{r['notebook']}: {r['examples'] / r['exported']:.2f} examples per exported cell")
    if examples / cells < LIMITS['examples']: problems.append(f'{examples / cells:.2f} examples per exported cell')
    for p in problems: print('FAIL', p)
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
