"""The pipeline runner on real Papermill kernels and a real MLflow SQLite store."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from conftest import BIN, clean_env, mlops, write_nb
from mlflow.tracking import MlflowClient


def steps_json(root, run_id=None):
    runs = sorted((root / 'runs').iterdir())
    run = root / 'runs' / run_id if run_id else runs[-1]
    return {p.parent.name: json.loads(p.read_text()) for p in run.glob('*/step.json')}


def executed(stderr):
    return [line.split()[1].rstrip(':') for line in stderr.splitlines() if line.endswith('s') and ': done in ' in line]


def test_three_steps_then_full_cache_hit(three_step):
    r = mlops(three_step, 'run')
    assert r.returncode == 0, r.stderr
    assert executed(r.stderr) == ['ingest', 'prep', 'train']
    recs = steps_json(three_step)
    assert {s: rec['status'] for s, rec in recs.items()} == {'ingest': 'done', 'prep': 'done', 'train': 'done'}
    assert recs['train']['metrics'] == {'total': 6.0}
    assert next((three_step / 'runs').glob('*/train/train.ipynb')).exists()  # executed notebook kept
    # Second run, nothing changed: no kernel (jupyter_client never imported), no MLflow, no run folder.
    probe = ("import sys; from mlops_nb.runner import run_pipeline; r = run_pipeline(sys.argv[1], echo=print); "
             "print(r.run_id, sorted(m for m in ('mlflow', 'papermill', 'jupyter_client') if m in sys.modules))")
    out = subprocess.run([sys.executable, '-c', probe, str(three_step)], capture_output=True, text=True, check=True).stdout
    assert 'nothing to run: all 3 steps are up to date' in out
    assert out.strip().endswith('None []'), out
    assert len(list((three_step / 'runs').iterdir())) == 1


def test_a_new_store_is_a_copy_of_a_migrated_empty_one(three_step, tmp_path):
    "Processes creating the same new SQLite store at once: exactly one creates it, and a first run uses it as MLflow's."
    import mlflow
    cache, db = tmp_path / 'cache', three_step / 'mlruns.db'
    env = {**os.environ, 'XDG_CACHE_HOME': str(cache)}
    race = 'import sys; from mlops_nb.tracking import new_sqlite_store; print(new_sqlite_store(sys.argv[1]))'
    procs = [subprocess.Popen([sys.executable, '-c', race, f'sqlite:///{db}'], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    assert sorted(p.communicate()[0].strip() for p in procs) == ['False', 'False', 'False', 'True']
    assert [f.name for f in (cache / 'mlops_nb').iterdir()] == [f'mlflow-{mlflow.__version__}.db']  # the migrated one
    assert [f.name for f in three_step.iterdir() if 'mlruns' in f.name] == ['mlruns.db']  # no temporary copy left
    r = mlops(three_step, 'run', env=env)
    assert r.returncode == 0, r.stderr
    client = MlflowClient(f'sqlite:///{db}', f'sqlite:///{db}')
    assert client.get_experiment('0').artifact_location == (three_step / 'mlartifacts' / '0').as_uri()  # beside it
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 4  # the run and 3 steps


def test_param_change_reruns_step_and_dependants_only(three_step):
    assert mlops(three_step, 'run').returncode == 0
    r = mlops(three_step, 'run', '-p', 'prep.scale=2')
    assert r.returncode == 0, r.stderr
    assert executed(r.stderr) == ['prep', 'train']
    assert 'ingest: cached' in r.stderr
    assert steps_json(three_step)['train']['metrics'] == {'total': 12.0}
    # A profile is a parameter change too; the untouched step stays cached.
    r = mlops(three_step, 'run', '--profile', 'pr')
    assert executed(r.stderr) == ['prep', 'train'] and steps_json(three_step)['train']['metrics'] == {'total': 3.0}


def test_markdown_edit_keeps_cache_code_edit_invalidates(three_step):
    assert mlops(three_step, 'run').returncode == 0
    nb_file = three_step / 'notebooks' / 'prep.ipynb'
    nb = nbformat.read(nb_file, as_version=4)
    nb.cells[0].source = 'Better prose about scaling.'
    nbformat.write(nb, nb_file)
    r = mlops(three_step, 'run')
    assert 'nothing to run' in r.stderr
    nb.cells[-1].source += '\n# a code comment is code'
    nbformat.write(nb, nb_file)
    assert executed(mlops(three_step, 'run').stderr) == ['prep', 'train']
    # An input file's content is part of the key.
    (three_step / 'raw' / 'values.txt').write_text('1\n2\n3\n4\n')
    r = mlops(three_step, 'run')
    assert executed(r.stderr) == ['ingest', 'prep', 'train'] and steps_json(three_step)['train']['metrics'] == {'total': 10.0}


def test_deleted_output_is_restored_from_cache(three_step):
    assert mlops(three_step, 'run').returncode == 0
    (three_step / 'data' / 'scaled.csv').unlink()
    (three_step / 'data' / 'values.csv').write_text('garbage')
    r = mlops(three_step, 'run')
    assert 'nothing to run' in r.stderr
    assert (three_step / 'data' / 'scaled.csv').read_text() == '1.0\n2.0\n3.0'
    assert (three_step / 'data' / 'values.csv').read_text() == '1\n2\n3'


def test_force_and_from(three_step):
    assert mlops(three_step, 'run').returncode == 0
    for args, steps in ((['--from', 'prep'], ['prep', 'train']), (['prep'], []), (['--force', 'prep'], ['ingest', 'prep'])):
        r = mlops(three_step, 'run', *args)
        assert r.returncode == 0 and executed(r.stderr) == steps, r.stderr


def test_failure_names_cell_keeps_notebook_and_resumes(three_step):
    write_nb(three_step / 'notebooks' / 'prep.ipynb', 'scale = 1.0', 'import mlops_nb as mn', 'x = 1\ny = x / 0')
    r = mlops(three_step, 'run')
    assert r.returncode == 1
    err = r.stderr
    assert "Error: step 'prep' failed in notebooks/prep.ipynb, cell 4: ZeroDivisionError: division by zero" in err
    assert 'y = x / 0' in err  # the last traceback lines
    recs = steps_json(three_step)
    assert recs['ingest']['status'] == 'done' and recs['prep']['status'] == 'failed' and 'train' not in recs
    assert recs["prep"]["error"]["cell"] == 4
    failed_nb = Path(err.split('executed notebook kept at ')[1].split()[0])
    assert failed_nb.exists() and 'ZeroDivisionError' in failed_nb.read_text()
    assert json.loads((three_step / 'runs' / recs['prep']['run_id'] / 'run.json').read_text())['status'] == 'failed'
    # Fix the notebook: the next run resumes at the failed step, ingest stays valid.
    write_nb(three_step / 'notebooks' / 'prep.ipynb', 'scale = 1.0', 'import mlops_nb as mn',
             'mn.output_path("data/scaled.csv").write_text(mn.input_path("data/values.csv").read_text())')
    r = mlops(three_step, 'run')
    assert r.returncode == 0, r.stderr
    assert 'ingest: cached' in r.stderr and executed(r.stderr) == ['prep', 'train']


def test_an_unknown_magic_is_named_in_the_error(three_step):
    "IPython reports an unknown magic on stderr, not as an error output: the error says what it said (was 'CellExecutionError:')."
    write_nb(three_step / 'notebooks' / 'prep.ipynb', 'scale = 1.0', '%notamagic 1')
    r = mlops(three_step, 'run')
    assert r.returncode == 1
    assert ("Error: step 'prep' failed in notebooks/prep.ipynb, cell 3: UsageError: Line magic function `%notamagic` not "
            "found.") in r.stderr, r.stderr
    assert steps_json(three_step)['prep']['error']['ename'] == 'UsageError'


def test_missing_declared_output_fails_the_step(three_step):
    write_nb(three_step / 'notebooks' / 'prep.ipynb', 'scale = 1.0', 'x = 1')
    r = mlops(three_step, 'run')
    assert r.returncode == 1 and "MissingOutput: declared output 'data/scaled.csv' not written" in r.stderr
    assert steps_json(three_step)['prep']['status'] == 'failed'


def test_bad_overrides_rejected_before_any_kernel(three_step):
    assert mlops(three_step, 'run').returncode == 0
    before = sorted((three_step / 'runs').iterdir())
    cases = {
        ('-p', 'scale=abc'): "notebooks/prep.ipynb: parameter 'scale' expects float, got 'abc' (from command line)",
        ('-p', 'nope=1'): "unknown parameter 'nope' (from command line): no step in this run declares it",
        ('-p', 'train.scale=1'): "notebooks/train.ipynb: unknown parameter 'scale' for step 'train'",
        ('-p', 'limit'): "parameter override 'limit': expected NAME=VALUE",
        ('--profile', 'prod'): "unknown profile 'prod' (profiles in mlops.yaml: pr)",
        ('nostep',): "unknown step 'nostep'",
        ('-p', 'api_token=x'): "unknown parameter 'api_token'",
    }
    for args, message in cases.items():
        r = mlops(three_step, 'run', *args)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted((three_step / 'runs').iterdir()) == before  # no run started, nothing lost
    assert all(rec['status'] == 'done' for rec in steps_json(three_step).values())


def test_broken_notebook_file(three_step):
    (three_step / 'notebooks' / 'train.ipynb').write_text('{"cells": [')
    r = mlops(three_step, 'run')
    assert r.returncode == 1
    assert 'notebooks/train.ipynb: not a notebook: invalid JSON at line 1, column 12' in r.stderr
    assert not (three_step / 'runs').exists()


def test_mlflow_nested_runs_with_lineage(three_step):
    subprocess.run(['git', 'init', '-q'], cwd=three_step, check=True)
    subprocess.run(['git', '-c', 'user.name=T', '-c', 'user.email=t@e', 'commit', '-qm', 'init', '--allow-empty'],
                   cwd=three_step, check=True)
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=three_step, capture_output=True, text=True).stdout.strip()
    assert mlops(three_step, 'run', '--profile', 'pr').returncode == 0
    client = MlflowClient(f"sqlite:///{three_step / 'mlruns.db'}")
    exp = client.get_experiment_by_name('three')
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if 'mlflow.parentRunId' not in r.data.tags]
    children = [r for r in runs if r.data.tags.get('mlflow.parentRunId') == parents[0].info.run_id]
    assert len(parents) == 1 and sorted(r.info.run_name for r in children) == ['ingest', 'prep', 'train']
    for r in [*parents, *children]:
        t = r.data.tags
        assert t['mlops_nb.git_commit'] == commit and t['mlops_nb.git_dirty'] == 'false'
        assert t['mlops_nb.profile'] == 'pr' and t['mlops_nb.version'] and r.info.status == 'FINISHED'
    for r in children:
        assert len(r.data.tags['mlops_nb.notebook_hash']) == 64 and len(r.data.tags['mlops_nb.data_hash']) == 64
    train = next(r for r in children if r.info.run_name == 'train')
    assert train.data.metrics == {'total': 3.0}
    assert train.data.params['n_values'] == '3' and train.data.params['boost'] == '0'
    assert [a.path for a in client.list_artifacts(train.info.run_id)] == ['train.ipynb']
    ingest = next(r for r in children if r.info.run_name == 'ingest')
    raw_sha = steps_json(three_step)['ingest']['inputs']['raw/values.txt']
    assert raw_sha == __import__('hashlib').sha256(b'1\n2\n3\n').hexdigest()
    assert ingest.data.tags['mlops_nb.cache_key'] == steps_json(three_step)['ingest']['cache_key']


def _wait_for(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate(): return True
        time.sleep(0.2)
    return False


def _train_running(root):
    return any(json.loads(p.read_text()).get('status') == 'running' and (p.parent / 'train.ipynb').exists()
               for p in (root / 'runs').glob('*/train/step.json')) if (root / 'runs').exists() else False


def test_sigkill_mid_step_then_rerun(three_step):
    proc = subprocess.Popen([str(BIN / 'mlops-nb'), '-C', str(three_step), 'run', '-p', 'pause=60'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=clean_env())
    try:
        assert _wait_for(lambda: _train_running(three_step)), 'train never started'
        # A second run while the first holds the lock refuses with a message.
        r = mlops(three_step, 'run')
        assert r.returncode == 1 and 'another mlops-nb run is in progress' in r.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    recs = steps_json(three_step)
    assert recs['train']['status'] == 'running'  # never claims done
    assert not any(json.loads(p.read_text())['step'] == 'train' for p in (three_step / '.mlops_nb' / 'cache').glob('*.json'))
    st = mlops(three_step, 'status')
    assert 'train        interrupted' in st.stdout, st.stdout
    r = mlops(three_step, 'run')
    assert r.returncode == 0, r.stderr
    assert executed(r.stderr) == ['train'] and 'ingest: cached' in r.stderr
    assert steps_json(three_step)['train']['status'] == 'done'
