"""The weather example end to end (pr profile), as `mlops-nb init` writes it, checked through MLflow's client."""
import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import whylogs
from conftest import BIN, mlops
from mlflow.tracking import MlflowClient
from vega_datasets import data

MEASUREMENTS = ['precipitation', 'temp_max', 'temp_min', 'wind']


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


@pytest.fixture(scope='module')
def features_module(weather):
    "The project's own `weather_features.py`, imported as the notebooks import it."
    root, _, _ = weather
    sys.path.insert(0, str(root / 'notebooks'))
    import weather_features
    yield weather_features
    sys.path.remove(str(root / 'notebooks'))


def _step_run(client, name):
    exp = client.get_experiment_by_name('weather')
    return client.search_runs([exp.experiment_id], f"tags.mlflow.runName = '{name}'", order_by=['start_time DESC'])[0]


def test_init_wrote_the_project_and_refuses_to_overwrite(weather):
    root, _, _ = weather
    for f in ('mlops.yaml', 'models.yaml', '.gitignore', 'notebooks/train.ipynb', 'notebooks/weather_features.py'):
        assert (root / f).is_file(), f
    r = subprocess.run([str(BIN / 'mlops-nb'), 'init', str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and 'already exists: not overwriting' in r.stderr


def test_registered_version_with_lineage_and_metrics(weather):
    root, run, client = weather
    mv = client.get_model_version_by_alias('weather', 'challenger')
    assert int(mv.version) == 1
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True, text=True).stdout.strip()
    t = mv.tags
    assert t['mlops_nb.git_commit'] == commit and t['mlops_nb.profile'] == 'pr'
    assert t['mlops_nb.source_run'] == _step_run(client, 'train').info.run_id
    assert len(t['mlops_nb.data_hash']) == 64
    evaluate = _step_run(client, 'evaluate').data.metrics
    for m in ('roc_auc', 'f1', 'accuracy', 'brier', 'roc_auc_ci_low', 'roc_auc_ci_high', 'f1_ci_low', 'f1_ci_high',
              *(f'baseline_{b}_{k}' for b in ('persistence', 'majority') for k in ('roc_auc', 'f1', 'accuracy', 'brier'))):
        assert float(t[f'metric.{m}']) == pytest.approx(evaluate[m]), m


def test_the_model_beats_both_baselines_the_pipeline_computed(weather):
    "From MLflow: the pipeline's own baselines on the test year, and the model above them (interval included)."
    root, _, client = weather
    m = {k.removeprefix('metric.'): float(v) for k, v in client.get_model_version('weather', '1').tags.items()
         if k.startswith('metric.')}
    assert m['roc_auc'] > m['baseline_persistence_roc_auc'] and m['roc_auc'] > m['baseline_majority_roc_auc']
    assert m['roc_auc_ci_low'] < m['roc_auc'] < m['roc_auc_ci_high']
    test = pd.read_parquet(root / 'data' / 'test.parquet')   # the persistence baseline, recomputed from the data
    from sklearn.metrics import roc_auc_score
    assert m['baseline_persistence_roc_auc'] == pytest.approx(
        roc_auc_score(test['rain_tomorrow'] == 'rain', test['precipitation'] > 0))
    train = _step_run(client, 'train')
    assert train.data.params['chosen_model'] in ('random_forest', 'svm') and train.data.params['runner_up'] in (
        'random_forest', 'svm')
    assert {'val_roc_auc_random_forest', 'val_roc_auc_svm'} <= set(train.data.metrics)


def test_the_model_requires_what_loads_it_pinned_and_nothing_else(weather):
    "requirements.txt of the registered model: the packages its classes and its feature module come from, pinned."
    from importlib.metadata import version
    root, _, client = weather
    mv = client.get_model_version('weather', '1')
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    lines = open(mlflow.pyfunc.get_model_dependencies(f'models:/weather/{mv.version}')).read().split()
    pins = dict(line.split('==') for line in lines)
    assert set(pins) == {'mlflow', 'numpy', 'pandas', 'scikit-learn', 'skops'}, lines  # not pytest, dask, rich
    assert all(pins[p] == version(p) for p in pins), lines


def test_the_model_card_goes_with_the_version_and_into_the_report(weather):
    root, _, client = weather
    mv = client.get_model_version('weather', '1')
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    card = open(mlflow.artifacts.download_artifacts(mv.tags['mlops_nb.model_card'])).read()
    for section in ('## Intended use', '## Data', '## Metrics on the test year', '## Calibration', '## Known limits',
                    '## Lineage'):
        assert section in card, section
    assert f"| ROC AUC | {float(mv.tags['metric.roc_auc']):.3f} [" in card
    model_section = card.split('## Model')[1].split('##')[0]
    assert 'Training\n2012-' in card and '2015-12-30 (unseen until evaluation)' in card   # the periods, from the features step
    assert any(f in model_section for f in ('random_forest', 'svm')) and '?' not in model_section
    assert mlops(root, 'report').returncode == 0
    page = next((root / 'reports' / 'runs').glob('*/index.html')).read_text()
    assert 'id="model-card"' in page and '<h2>Intended use</h2>' in page


def test_no_feature_uses_a_later_day(features_module):
    "Changing any day's measurements (the last test day among them) changes no feature row of an earlier day."
    wf = features_module
    days = data.seattle_weather()
    before = wf.make_features(days).set_index('date')
    for i in (len(days) - 1, len(days) - 200, 400, 10):
        changed = days.copy()
        changed.loc[i, wf.MEASUREMENTS] = changed.loc[i, wf.MEASUREMENTS] + 50
        after = wf.make_features(changed).set_index('date')
        day = pd.Timestamp(days.loc[i, 'date'])
        earlier = before.index[before.index < day]
        pd.testing.assert_frame_equal(after.loc[earlier, wf.FEATURES], before.loc[earlier, wf.FEATURES])
        if i < len(days) - 1:  # the change does reach the rows of that day and after (the last day has no row)
            assert not after.loc[after.index >= day, wf.FEATURES].equals(before.loc[before.index >= day, wf.FEATURES])
    train, val, test = wf.time_split(before.reset_index(), 365, 365)
    assert train['date'].max() < val['date'].min() and val['date'].max() < test['date'].min()


def test_onnx_export_agrees_with_sklearn(weather, features_module):
    root, _, client = weather
    mv = client.get_model_version_by_alias('weather', 'challenger')
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    onnx_file = mlflow.artifacts.download_artifacts(mv.tags['mlops_nb.onnx'])
    model = mlflow.sklearn.load_model('models:/weather@challenger')
    test = pd.read_parquet(root / 'data' / 'test.parquet')
    FEATURES = features_module.FEATURES
    sess = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    labels, proba = sess.run(None, {'input': test[FEATURES].to_numpy(np.float32)})
    agreement = (labels == model.predict(test[FEATURES])).mean()
    assert agreement >= 0.98
    assert np.abs(proba[:, 1] - model.predict_proba(test[FEATURES])[:, 1]).max() < 1e-3
    assert _step_run(client, 'register').data.metrics['onnx_agreement'] == pytest.approx(agreement)


def test_artifacts_logged(weather):
    root, _, client = weather
    names = {s: {a.path for a in client.list_artifacts(_step_run(client, s).info.run_id)}
             for s in ('ingest', 'features', 'evaluate', 'register')}
    assert {'ingest.ipynb', 'days.whylogs'} <= names['ingest'] and 'train.whylogs' in names['features']
    assert {'evaluate.ipynb', 'roc_curve.png', 'calibration.png', 'confusion_matrix.png', 'feature_importance.png',
            'partial_dependence.png'} <= names['evaluate']
    assert {'register.ipynb', 'model.onnx', 'MODEL_CARD.md'} <= names['register']
    mv = client.get_model_version_by_alias('weather', 'challenger')
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    ref = whylogs.read(mlflow.artifacts.download_artifacts(mv.tags['mlops_nb.reference_profile'])).view()
    train = pd.read_parquet(root / 'data' / 'train.parquet')
    val = pd.read_parquet(root / 'data' / 'val.parquet')
    assert ref.get_column('temp_max').get_metric('counts').n.value == len(train) + len(val)  # what the model is fitted on


def test_failed_constraint_fails_validate_with_table(weather):
    root, _, _ = weather
    r = mlops(root, 'run', 'validate', '-p', 'validate.max_precipitation=5')
    assert r.returncode == 1
    assert "step 'validate' failed in notebooks/validate.ipynb" in r.stderr
    assert 'data constraints failed on data/days.parquet' in r.stderr and 'precipitation is in range [0,5.0]' in r.stderr


def test_sweep_searches_both_families_and_picks_by_validation_roc_auc(weather):
    root, _, client = weather
    r = mlops(root, 'sweep', 'train', '--grid', 'model=random_forest,svm', 'C=0.3,3', '--profile', 'pr')
    assert r.returncode == 0, r.stderr
    sweep = json.loads(sorted((root / 'runs').glob('*/run.json'))[-1].read_text())
    assert sweep['kind'] == 'sweep' and len(sweep['trials']) == 4
    scores = [t['metrics']['val_roc_auc'] for t in sweep['trials']]
    assert sweep['best']['metrics']['val_roc_auc'] == max(scores)
    assert f"best of 4 trials: {sweep['best']['params']}" in r.stderr
    children = client.search_runs([client.get_experiment_by_name('weather').experiment_id],
                                  f"tags.mlflow.parentRunId = '{sweep['mlflow_run_id']}'")
    assert sorted(c.data.params['chosen_model'] for c in children) == ['random_forest'] * 2 + ['svm'] * 2


# Monitoring, against the reference profile the pipeline attached to the registered version.

def _new_days(tmp_path, name='new_days.csv', **changes):
    "The last year of days as raw measurements (what a station reports), optionally altered."
    days = data.seattle_weather().assign(date=lambda d: pd.to_datetime(d['date']))
    df = days[days['date'] >= '2015-01-01'][['date', *MEASUREMENTS]].reset_index(drop=True)
    df = df.assign(**{k: v(df) for k, v in changes.items()})
    df.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def test_monitor_no_drift_on_the_last_year(weather, tmp_path):
    root, _, _ = weather
    r = mlops(root, 'monitor', '--data', str(_new_days(tmp_path)), '--alias', 'challenger')
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith('no drift')
    report = json.loads((root / 'reports' / 'monitor' / 'drift.json').read_text())
    assert report['drifted'] == [] and set(report['features']) == set(MEASUREMENTS)
    assert all(f['algorithm'] == 'ks' and f['pvalue'] >= 0.0125 for f in report['features'].values())
    assert (root / 'reports' / 'monitor' / 'drift.html').is_file()


def test_monitor_flags_shifted_features(weather, tmp_path):
    root, _, _ = weather
    data_file = _new_days(tmp_path, temp_max=lambda d: d.temp_max + 8, temp_min=lambda d: d.temp_min + 8,
                          wind=lambda d: d.wind * 2)
    summary = tmp_path / 'summary.md'
    r = mlops(root, 'monitor', '--data', str(data_file), '--alias', 'challenger',
              env={**os.environ, 'GITHUB_STEP_SUMMARY': str(summary)})
    assert r.returncode == 3, r.stdout + r.stderr
    assert 'DRIFT in temp_max, temp_min, wind; notified' in r.stdout
    verdicts = {line.split()[0]: line.split()[-1] for line in r.stdout.splitlines()[2:6]}
    assert verdicts == {'precipitation': 'ok', 'temp_max': 'DRIFT', 'temp_min': 'DRIFT', 'wind': 'DRIFT'}
    assert '| wind | ks |' in summary.read_text() and '❌ DRIFT' in summary.read_text()


@pytest.mark.parametrize('make, message', [
    (lambda d: d.rename(columns={'temp_max': 'tmax'}), "column 'temp_max' missing (new columns: date, tmax)"),
    (lambda d: d.assign(wind=d.wind.astype(object).where(d.index != 5, 'windy')), "column 'wind' should be numeric"),
    (lambda d: d.iloc[:0], 'no rows'),
])
def test_monitor_bad_data_is_one_clear_error(weather, tmp_path, make, message):
    root, _, _ = weather
    make(pd.read_csv(_new_days(tmp_path))).to_csv(tmp_path / 'bad.csv', index=False)
    r = mlops(root, 'monitor', '--data', str(tmp_path / 'bad.csv'), '--alias', 'challenger')
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr
    (tmp_path / 'empty.csv').write_text('')
    r = mlops(root, 'monitor', '--data', str(tmp_path / 'empty.csv'), '--alias', 'challenger')
    assert r.returncode == 1 and 'empty.csv: no rows' in r.stderr


def test_monitor_fallback_edits_models_yaml(weather, tmp_path):
    root, _, _ = weather
    (root / 'models.yaml').write_text('# desired\nmodels:\n  weather: {champion: 2, backup: 1}\n')
    r = mlops(root, 'monitor', '--data', str(_new_days(tmp_path, wind=lambda d: d.wind * 3)), '--alias', 'challenger',
              '--action', 'fallback')
    assert r.returncode == 3 and 'fallback: models.yaml weather.champion = 1 (was 2)' in r.stdout
    assert (root / 'models.yaml').read_text() == '# desired\nmodels:\n  weather:\n    champion: 1\n    backup: 1\n'
    (root / 'models.yaml').write_text('models:\n  weather: {}\n')


def test_monitor_retrain_registers_a_new_challenger(weather, tmp_path):
    root, _, client = weather
    new = _new_days(tmp_path, 'new_days.csv', wind=lambda d: d.wind * 3,
                    date=lambda d: pd.date_range('2016-01-01', periods=len(d), freq='D'))  # the days after the dataset
    r = mlops(root, 'monitor', '--data', str(new), '--alias', 'challenger', '--action', 'retrain')
    assert r.returncode == 3 and 'retrained: run ' in r.stdout, r.stdout + r.stderr
    assert (root / 'data' / 'incoming' / 'new_days.csv').is_file()
    ingest = json.loads(sorted((root / 'runs').glob('*/ingest/step.json'))[-1].read_text())
    assert ingest['params']['extra_data'] == 'data/incoming/new_days.csv' and ingest['status'] == 'done'
    assert ingest['metrics']['days'] == 1461 + 365
    assert int(client.get_model_version_by_alias('weather', 'challenger').version) == 2
