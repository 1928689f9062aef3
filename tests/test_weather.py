"""The weather example end to end (pr profile), as `mlops-nb init` writes it, checked through MLflow's client."""
import json
import os
import subprocess

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import whylogs
from conftest import BIN, mlops
from mlflow.tracking import MlflowClient
from sklearn.metrics import f1_score

CLASSES = ['drizzle', 'fog', 'rain', 'snow', 'sun']
FEATURES = ['precipitation', 'temp_max', 'temp_min', 'wind', 'month']


@pytest.fixture(scope='module')
def weather(tmp_path_factory):
    "A project created by `mlops-nb init`, in a git repo, after one `run --profile pr`."
    root = tmp_path_factory.mktemp('w') / 'weather'
    r = subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root), '--name', 'weather'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    git = ['git', '-c', 'user.name=T', '-c', 'user.email=t@e']
    for cmd in ([*git, 'init', '-q'], [*git, 'add', '-A'], [*git, 'commit', '-qm', 'init']):
        subprocess.run(cmd, cwd=root, check=True)
    run = mlops(root, 'run', '--profile', 'pr')
    assert run.returncode == 0, run.stderr
    client = MlflowClient(f"sqlite:///{root / 'mlruns.db'}", f"sqlite:///{root / 'mlruns.db'}")
    return root, run, client


def _step_run(client, name):
    exp = client.get_experiment_by_name('weather')
    return client.search_runs([exp.experiment_id], f"tags.mlflow.runName = '{name}'", order_by=['start_time DESC'])[0]


def test_init_wrote_the_project_and_refuses_to_overwrite(weather):
    root, _, _ = weather
    for f in ('mlops.yaml', 'models.yaml', '.gitignore', 'notebooks/train.ipynb', 'notebooks/weather_features.py'):
        assert (root / f).is_file(), f
    r = subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and 'already exists: not overwriting' in r.stderr


def test_registered_version_with_lineage(weather):
    root, run, client = weather
    mv = client.get_model_version_by_alias('weather', 'challenger')
    assert int(mv.version) == 1
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True, text=True).stdout.strip()
    t = mv.tags
    assert t['mlops_nb.git_commit'] == commit and t['mlops_nb.profile'] == 'pr'
    assert t['mlops_nb.source_run'] == _step_run(client, 'train').info.run_id
    assert len(t['mlops_nb.data_hash']) == 64
    evaluate = _step_run(client, 'evaluate')
    for m in ('accuracy', 'f1_macro', 'precision_macro', 'recall_macro', *(f'f1_{c}' for c in CLASSES)):
        assert float(t[f'metric.{m}']) == pytest.approx(evaluate.data.metrics[m])


def test_f1_beats_majority_baseline(weather):
    root, _, client = weather
    train, test = pd.read_parquet(root / 'data' / 'train.parquet'), pd.read_parquet(root / 'data' / 'test.parquet')
    baseline = f1_score(test['weather'], [train['weather'].mode()[0]] * len(test), labels=CLASSES, average='macro',
                        zero_division=0)
    f1 = _step_run(client, 'evaluate').data.metrics['f1_macro']
    assert f1 > baseline
    executed = next((root / 'runs').glob('*/evaluate/evaluate.ipynb')).read_text()
    assert f'test macro F1 {f1:.3f}' in executed  # written in the notebook's output too


def test_onnx_export_agrees_with_sklearn(weather):
    root, _, client = weather
    mv = client.get_model_version_by_alias('weather', 'challenger')
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    onnx_file = mlflow.artifacts.download_artifacts(mv.tags['mlops_nb.onnx'])
    model = mlflow.sklearn.load_model('models:/weather@challenger')
    test = pd.read_parquet(root / 'data' / 'test.parquet')
    sess = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    onnx_pred = sess.run(['label'], {'input': test[FEATURES].to_numpy(np.float32)})[0]
    agreement = (onnx_pred == model.predict(test[FEATURES])).mean()
    assert agreement >= 0.98
    assert _step_run(client, 'register').data.metrics['onnx_agreement'] == pytest.approx(agreement)


def test_artifacts_logged(weather):
    root, _, client = weather
    names = {s: {a.path for a in client.list_artifacts(_step_run(client, s).info.run_id)}
             for s in ('ingest', 'evaluate', 'register')}
    assert {'ingest.ipynb', 'train.whylogs', 'test.whylogs'} <= names['ingest']
    assert {'evaluate.ipynb', 'confusion_matrix.png', 'feature_importance.png'} <= names['evaluate']
    assert {'register.ipynb', 'model.onnx'} <= names['register']
    mv = client.get_model_version_by_alias('weather', 'challenger')
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    ref = whylogs.read(mlflow.artifacts.download_artifacts(mv.tags['mlops_nb.reference_profile'])).view()
    train = pd.read_parquet(root / 'data' / 'train.parquet')
    assert ref.get_column('temp_max').get_metric('counts').n.value == len(train)


def test_failed_constraint_fails_validate_with_table(weather):
    root, _, _ = weather
    r = mlops(root, 'run', 'validate', '-p', 'validate.max_precipitation=5')
    assert r.returncode == 1
    assert "step 'validate' failed in notebooks/validate.ipynb" in r.stderr
    assert 'data constraints failed on data/train.parquet' in r.stderr and 'precipitation is in range [0,5.0]' in r.stderr


def test_sweep_nested_runs_and_best(weather):
    root, _, client = weather
    r = mlops(root, 'sweep', 'train', '--grid', 'n_estimators=10,30', '--profile', 'pr')
    assert r.returncode == 0, r.stderr
    sweep = json.loads(sorted((root / 'runs').glob('*/run.json'))[-1].read_text())
    assert sweep['kind'] == 'sweep' and len(sweep['trials']) == 2
    scores = [t['metrics']['val_f1_macro'] for t in sweep['trials']]
    assert sweep['best']['metrics']['val_f1_macro'] == max(scores)
    assert f"best of 2 trials: {sweep['best']['params']}" in r.stderr
    children = client.search_runs([client.get_experiment_by_name('weather').experiment_id],
                                  f"tags.mlflow.parentRunId = '{sweep['mlflow_run_id']}'")
    assert sorted(c.data.params['n_estimators'] for c in children) == ['10', '30']


# Monitoring, against the reference profile the pipeline attached to the registered version.

def _held_out(root, tmp_path, name='held_out.csv', **changes):
    "The held-out months as CSV, optionally altered."
    df = pd.read_parquet(root / 'data' / 'test.parquet').drop(columns=['month'])
    df = df.assign(**{k: v(df) for k, v in changes.items()})
    df.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def test_monitor_no_drift_on_held_out_months(weather, tmp_path):
    root, _, _ = weather
    data = _held_out(root, tmp_path, month=lambda d: pd.to_datetime(d.date).dt.month)
    r = mlops(root, 'monitor', '--data', str(data), '--alias', 'challenger')
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith('no drift')
    report = json.loads((root / 'reports' / 'monitor' / 'drift.json').read_text())
    assert report['drifted'] == [] and set(report['features']) == set(FEATURES)
    assert all(f['algorithm'] == 'ks' and f['pvalue'] >= 0.01 for f in report['features'].values())
    assert (root / 'reports' / 'monitor' / 'drift.html').is_file()


def test_monitor_flags_shifted_features(weather, tmp_path):
    root, _, _ = weather
    data = _held_out(root, tmp_path, temp_max=lambda d: d.temp_max + 8, temp_min=lambda d: d.temp_min + 8,
                     wind=lambda d: d.wind * 2, month=lambda d: pd.to_datetime(d.date).dt.month)
    summary = tmp_path / 'summary.md'
    r = mlops(root, 'monitor', '--data', str(data), '--alias', 'challenger',
              env={**os.environ, 'GITHUB_STEP_SUMMARY': str(summary)})
    assert r.returncode == 3, r.stdout + r.stderr
    assert 'DRIFT in temp_max, temp_min, wind; notified' in r.stdout
    verdicts = {line.split()[0]: line.split()[-1] for line in r.stdout.splitlines()[2:7]}
    assert verdicts == {'precipitation': 'ok', 'temp_max': 'DRIFT', 'temp_min': 'DRIFT', 'wind': 'DRIFT', 'month': 'ok'}
    assert '| wind | ks |' in summary.read_text() and '❌ DRIFT' in summary.read_text()


@pytest.mark.parametrize('make, message', [
    (lambda d: d.rename(columns={'temp_max': 'tmax'}), "column 'temp_max' missing (new columns: tmax)"),
    (lambda d: d.assign(wind=d.wind.astype(object).where(d.index != 5, 'windy')), "column 'wind' should be numeric"),
    (lambda d: d.iloc[:0], 'no rows'),
])
def test_monitor_bad_data_is_one_clear_error(weather, tmp_path, make, message):
    root, _, _ = weather
    df = pd.read_parquet(root / 'data' / 'test.parquet')
    make(df).to_csv(tmp_path / 'bad.csv', index=False)
    r = mlops(root, 'monitor', '--data', str(tmp_path / 'bad.csv'), '--alias', 'challenger')
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr
    (tmp_path / 'empty.csv').write_text('')
    r = mlops(root, 'monitor', '--data', str(tmp_path / 'empty.csv'), '--alias', 'challenger')
    assert r.returncode == 1 and 'empty.csv: no rows' in r.stderr


def test_monitor_fallback_edits_models_yaml(weather, tmp_path):
    root, _, _ = weather
    (root / 'models.yaml').write_text('# desired\nmodels:\n  weather: {champion: 2, backup: 1}\n')
    data = _held_out(root, tmp_path, wind=lambda d: d.wind * 3, month=lambda d: pd.to_datetime(d.date).dt.month)
    r = mlops(root, 'monitor', '--data', str(data), '--alias', 'challenger', '--action', 'fallback')
    assert r.returncode == 3 and 'fallback: models.yaml weather.champion = 1 (was 2)' in r.stdout
    assert (root / 'models.yaml').read_text() == '# desired\nmodels:\n  weather:\n    champion: 1\n    backup: 1\n'
    (root / 'models.yaml').write_text('models:\n  weather: {}\n')


def test_monitor_retrain_registers_a_new_challenger(weather, tmp_path):
    root, _, client = weather
    data = _held_out(root, tmp_path, 'new_days.csv', wind=lambda d: d.wind * 3, month=lambda d: pd.to_datetime(d.date).dt.month)
    r = mlops(root, 'monitor', '--data', str(data), '--alias', 'challenger', '--action', 'retrain')
    assert r.returncode == 3 and 'retrained: run ' in r.stdout, r.stdout + r.stderr
    assert (root / 'data' / 'incoming' / 'new_days.csv').is_file()
    ingest = json.loads(sorted((root / 'runs').glob('*/ingest/step.json'))[-1].read_text())
    assert ingest['params']['extra_data'] == 'data/incoming/new_days.csv' and ingest['status'] == 'done'
    assert int(client.get_model_version_by_alias('weather', 'challenger').version) == 2
