"""The throwaway project the registry notebooks' examples share (bundle, sync, publish, gitops): a project in git, a
bare repository standing in for GitHub, and `candidate(f1)` registering a tiny model as a pipeline's register step
does, with the lineage tags the pipeline sets. Notebook scaffolding, not part of the package."""
import subprocess
import tempfile
from pathlib import Path


def sh(*a, cwd) -> str: return subprocess.run(a, cwd=cwd, check=True, capture_output=True, text=True).stdout


def demo_registry():
    "(tmp folder, project config, tracker, candidate): the project is committed and pushed to `tmp/hub.git`."
    import mlflow
    from sklearn.dummy import DummyClassifier
    from mlops_nb.config import load_config
    from mlops_nb.registry import register_version
    from mlops_nb.tracking import Tracker, mlflow_store
    tmp = Path(tempfile.mkdtemp())
    proj = tmp / 'proj'
    proj.mkdir()
    (proj / 'a.ipynb').write_text('{}')
    (proj / 'mlops.yaml').write_text('name: demo\nsteps:\n  a: {notebook: a.ipynb}\ngates:\n  f1: ">= champion - 0.01"\n')
    (proj / 'models.yaml').write_text('models:\n  demo: {}\n')
    (proj / '.gitignore').write_text('mlruns.db\nmlartifacts/\n.mlops_nb/\n')
    sh('git', 'init', '-q', '--bare', '-b', 'main', str(tmp / 'hub.git'), cwd=tmp)
    sh('git', 'init', '-q', '-b', 'main', cwd=proj)
    sh('git', 'remote', 'add', 'origin', str(tmp / 'hub.git'), cwd=proj)
    sh('git', 'add', '-A', cwd=proj)
    sh('git', 'commit', '-qm', 'project', cwd=proj)
    sh('git', 'push', '-q', 'origin', 'main', cwd=proj)
    cfg = load_config(proj)
    tracker = Tracker(cfg)

    def candidate(f1: float):
        "Train and register a tiny model, as a pipeline's register step does: a new local (unpublished) version."
        with mlflow_store(tracker.uri):
            with mlflow.start_run(experiment_id=tracker.experiment_id):
                info = mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name='model')
            return register_version(tracker.client, 'demo', info.model_uri, {'metric.f1': f1, 'mlops_nb.git_commit': 'abc'},
                                    alias='challenger')
    return tmp, cfg, tracker, candidate
