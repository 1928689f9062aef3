"""The IPython extension in a real kernel, and the widgets driven by their own controls."""
import json
import os

import nbformat
import pytest
from conftest import clean_env, git, mlops, register_versions, write_nb
from nbclient import NotebookClient

from mlops_nb.jupyter import param_form, promotion_panel, run_explorer
from mlops_nb.registry import load_models

MLOPS = """name: nbproj
steps:
  score: {notebook: score.ipynb}
profiles:
  pr: {params: {alpha: 0.1}}
gates:
  f1_macro: ">= champion - 0.01"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    "One step `score` logging alpha * len(tags) + flag; a registry with versions 1 (f1 0.6) and 2 (f1 0.4)."
    write_nb(tmp_path / 'score.ipynb', "alpha: float = 0.5\ntags: list = ['a', 'b']\nflag = False\nname = 'x'",
             'import mlops_nb as mn\nmn.log_metric("score", alpha * len(tags) + flag)')
    (tmp_path / 'mlops.yaml').write_text(MLOPS)
    (tmp_path / 'models.yaml').write_text('models:\n  m: {}\n')
    register_versions(tmp_path, 'm', [{'f1_macro': 0.6}, {'f1_macro': 0.4}])
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    return tmp_path


def publish_both(project):
    "Commit the project to git and publish versions 1 and 2 (as tags of this repository: there is no remote)."
    (project / '.gitignore').write_text('mlruns.db\nmlartifacts/\n.mlops_nb/\nruns/\n')
    git(project, 'init', '-q', '-b', 'main')
    git(project, 'add', '-A')
    git(project, 'commit', '-qm', 'project')
    for v in ('1', '2'): assert mlops(project, 'publish', 'm', '--version', v).returncode == 0


def _runs(root):
    return sorted(p.name for p in (root / 'runs').iterdir()) if (root / 'runs').exists() else []


def test_magics_in_a_real_kernel(project):
    publish_both(project)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [
        '%load_ext mlops_nb',
        '%mlops run',
        '%%mlops params score\nalpha = 2.0\nflag = True',
        '%mlops status',
        '%mlops runs',
        "import os\nruns = sorted(os.listdir('runs'))\n%mlops compare {runs[0]} {runs[1]}",
        '%mlops promote m 1',
        '%mlops promote m 2',
        '%mlops run -p nope=1',
    ]])
    nb.metadata.kernelspec = {'name': 'python3', 'language': 'python', 'display_name': 'Python 3'}
    os.environ.pop('MLFLOW_TRACKING_URI', None)
    NotebookClient(nb, timeout=300, resources={'metadata': {'path': str(project)}}, env=clean_env()).execute()
    text = lambda i: ''.join(o.get('text', '') for o in nb.cells[i].outputs)  # noqa: E731
    runs = _runs(project)
    assert len(runs) == 2
    metrics = [json.loads((project / 'runs' / r / 'score' / 'step.json').read_text())['metrics']['score'] for r in runs]
    assert metrics == [1.0, 5.0]  # 0.5 * 2 + 0, then 2.0 * 2 + 1 from the %%mlops params cell
    assert 'score        done' in text(3)
    assert runs[1] in text(4) and runs[0] in text(4)
    assert 'score.alpha' in text(5) and '+4' in text(5)
    assert 'models.yaml: m.champion = 1' in text(6)
    assert load_models(project).models == {'m': {'champion': 1}}
    assert 'failed gate f1_macro' in text(7)  # version 2 refused, the file unchanged
    assert "unknown parameter 'nope'" in text(8)


def test_param_form_validates_and_runs(project):
    form = param_form('score', project)
    assert set(form.fields) == {'alpha', 'tags', 'flag', 'name'}
    assert type(form.fields['alpha']).__name__ == 'FloatText' and type(form.fields['flag']).__name__ == 'Checkbox'
    form.fields['tags'].value = "['a', 'b'"  # not a list
    assert form.button.disabled and "parameter 'tags' expects list" in form.error.value
    form.fields['tags'].value = "['a', 'b', 'c']"
    form.fields['alpha'].value = 1.5
    assert not form.button.disabled and form.error.value == ''
    form.button.click()
    assert form.button.disabled  # while the step runs
    form.thread.join(300)
    assert not form.button.disabled
    assert form.result.steps[0].metrics == {'score': 4.5}
    assert any('score: done in' in o.get('text', '') for o in form.output.outputs)


def test_run_explorer_filters_and_compares(project):
    from mlops_nb.runner import run_pipeline
    run_pipeline(project, echo=lambda m: None)
    run_pipeline(project, profile='pr', echo=lambda m: None)
    ex = run_explorer(project)
    assert len(ex.pick.options) == 2
    ex.profile.value = 'pr'
    assert len(ex.pick.options) == 1 and 'pr' in ex.table.value
    ex.profile.value = '(all)'
    assert ex.button.disabled
    ex.pick.value = tuple(ex.pick.options)
    assert not ex.button.disabled
    table = ex.compare()
    assert table.loc['score.alpha'].tolist() == [0.5, 0.1] and table.loc['score'].tolist() == [1.0, 0.2]
    assert [sorted(o['data']) for o in ex.output.outputs][1] == ['image/png', 'text/plain']  # the table, then the plot


def test_promotion_panel_shows_gates_and_writes_models_yaml(project):
    publish_both(project)
    (project / 'models.yaml').write_text('models:\n  m: {champion: 1}\n')
    panel = promotion_panel('m', project)
    assert panel.version.options == (1, 2) and panel.version.value == 2
    assert panel.button.disabled and 'FAIL' in panel.gates.value  # 0.4 < 0.6 - 0.01
    panel.version.value = 1
    assert not panel.button.disabled and 'no champion to compare' in panel.gates.value
    (project / 'models.yaml').write_text('models:\n  m: {}\n')
    panel.refresh()
    panel.button.click()
    assert load_models(project).models == {'m': {'champion': 1}} and 'Commit it' in panel.status.value


def test_notebook_run_by_hand_is_an_adhoc_run(project):
    "Opening the step's notebook in Jupyter and running it: same defaults, an ad-hoc MLflow run in the project's store."
    from mlflow.tracking import MlflowClient
    nb = nbformat.read(project / 'score.ipynb', as_version=4)
    NotebookClient(nb, timeout=300, resources={'metadata': {'path': str(project)}}, env=clean_env()).execute()
    assert 'ad-hoc MLflow run' in ''.join(o.get('text', '') for c in nb.cells for o in c.get('outputs', []))
    uri = f"sqlite:///{project / 'mlruns.db'}"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name('nbproj').experiment_id], "tags.`mlops_nb.adhoc` = 'true'")
    assert len(runs) == 1 and runs[0].data.metrics == {'score': 1.0}  # alpha 0.5 * 2 tags + False: the notebook's defaults
    assert not (project / 'runs').exists()  # not a pipeline run
    assert runs[0].info.artifact_uri.startswith((project / 'mlartifacts').as_uri())  # where the runner keeps artifacts
