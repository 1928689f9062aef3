"""`mlops-nb validate` and the CLI's basics, through the installed console script."""
import os
import subprocess

import pytest
from conftest import BIN, clean_env, imported, mlops, write_nb

VALID = "name: demo\nsteps:\n  a: {notebook: a.ipynb}\n  b: {notebook: b.ipynb, needs: [a]}\n"


@pytest.fixture
def project(tmp_path):
    write_nb(tmp_path / 'a.ipynb', 'n = 1', 'x = n')
    write_nb(tmp_path / 'b.ipynb', None, 'y = 2')
    return tmp_path


def test_help_and_version():
    r = subprocess.run([str(BIN / 'mlops-nb'), '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'validate' in r.stdout and 'run' in r.stdout
    r = subprocess.run([str(BIN / 'mlops-nb'), '--version'], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith('mlops-nb, version ')


def test_the_command_imports_jsonschema_without_building_iri_grammars(project):
    "Papermill imports nbformat, nbformat imports jsonschema, and jsonschema rfc3987-syntax, whose import costs ~1 s."
    (project / 'mlops.yaml').write_text(VALID)
    r = subprocess.run([str(BIN / 'python'), '-X', 'importtime', str(BIN / 'mlops-nb'), '-C', str(project), 'validate'],
                       capture_output=True, text=True)
    assert r.returncode == 0 and '2 steps (a -> b)' in r.stdout, r.stderr[-2000:]
    modules = set(imported(r.stderr))
    assert {'papermill', 'nbformat', 'jsonschema'} <= modules, sorted(modules)[:50]
    assert 'rfc3987_syntax.syntax_helpers' not in modules and 'lark' not in modules  # the grammars and their parser


@pytest.mark.parametrize('args, yaml, code', [
    (['validate'], VALID, 0), (['validate'], VALID.replace('b.ipynb', 'c.ipynb'), 1), (['nosuch'], VALID, 2),
    (['ci', '-s', 'HOME'], VALID, 1),  # the variable is in the forking process's environment, not in the command's
])
def test_forked_commands_are_the_console_script(project, args, yaml, code):
    "`mlops()` forks each command from a process that has imported it (tests/cliserver.py): nothing else differs."
    (project / 'mlops.yaml').write_text(yaml)
    env = clean_env({k: v for k, v in os.environ.items() if k != 'HOME'})
    script = subprocess.run([str(BIN / 'mlops-nb'), '-C', str(project), *args], capture_output=True, text=True, env=env)
    forked = mlops(project, *args, env=env)
    assert script.returncode == code and (script.stdout or script.stderr), script
    assert (forked.returncode, forked.stdout, forked.stderr) == (script.returncode, script.stdout, script.stderr)


def test_valid_config(project):
    (project / 'mlops.yaml').write_text(VALID)
    r = mlops(project, 'validate')
    assert r.returncode == 0, r.stderr
    assert '2 steps (a -> b)' in r.stdout


@pytest.mark.parametrize('text, expected', [
    (VALID + "  c: {notebook: a.ipynb, neds: [a]}\n",
     "mlops.yaml:5: unknown key 'steps.c.neds' (allowed here: notebook, needs, inputs, outputs, params)"),
    ("name: demo\nsteps:\n  a: {notebook: a.ipynb, needs: a}\n",
     "mlops.yaml:3: steps.a.needs: Input should be a valid list, got 'a'"),
    ("name: demo\nsteps:\n  a: {notebook: nope.ipynb}\n",
     "mlops.yaml:3: step 'a': notebook 'nope.ipynb' not found"),
    ("name: demo\nsteps:\n  a: {notebook: a.ipynb, needs: [b]}\n  b: {notebook: b.ipynb, needs: [a]}\n",
     "mlops.yaml:3: cycle in needs: a -> b -> a"),
    ("name: demo\nsteps:\n  a: {notebook: a.ipynb, params: {m: 2}}\n",
     "a.ipynb: unknown parameter 'm' for step 'a' (from mlops.yaml; declared: n)"),
    ("name: demo\nsteps:\n  a: {notebook: a.ipynb, params: {n: many}}\n",
     "a.ipynb: parameter 'n' expects int, got 'many' (from mlops.yaml)"),
    ("name: demo\nsteps:\n  a: {notebook: a.ipynb}\nprofiles:\n  pr: {params: {nn: 1}}\n",
     "unknown parameter 'nn' (from profile 'pr'): no step declares it"),
])
def test_invalid_config_is_one_clear_line(project, text, expected):
    (project / 'mlops.yaml').write_text(text)
    r = mlops(project, 'validate')
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Error: '), r.stderr
    assert lines[0].endswith(expected), lines[0]


def test_no_project(tmp_path):
    r = mlops(tmp_path, 'validate')
    assert r.returncode == 1 and 'no mlops.yaml in' in r.stderr
