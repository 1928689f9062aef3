// mlops_nb in JupyterLab and Notebook 7: the pipeline panel in the left area, following the active notebook, and a
// "Run as pipeline step" button in the notebook toolbar. The server half is mlops_nb/lab.py.
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ToolbarButton } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { post } from './api';
import { PipelinePanel } from './panel';

class RunAsStep implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
  constructor(private readonly panel: PipelinePanel, private readonly app: JupyterFrontEnd) {}

  createNew(nb: NotebookPanel): IDisposable {
    const button = new ToolbarButton({
      className: 'mlops-run-as-step',
      label: 'Run as pipeline step',
      tooltip: "Run this notebook's pipeline step (and what it needs) with mlops-nb",
      onClick: () => {
        this.app.shell.activateById(this.panel.id);
        void post('run', { path: nb.context.path, notebook: nb.context.path, action: 'step' })
          .then(() => this.panel.refresh())
          .catch(e => window.alert((e as Error).message));
      }
    });
    nb.toolbar.insertItem(10, 'mlopsRunAsStep', button);
    return new DisposableDelegate(() => button.dispose());
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlops-nb-lab:plugin',
  description: 'The mlops_nb pipeline beside the notebook you are editing.',
  autoStart: true,
  optional: [INotebookTracker, IDocumentManager, ILabShell],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker | null, docs: IDocumentManager | null) => {
    const panel = new PipelinePanel(app, docs);
    app.shell.add(panel, 'left', { rank: 900 });
    const follow = () => panel.setPath(tracker?.currentWidget?.context.path ?? '');
    tracker?.currentChanged.connect(follow);
    follow();
    void panel.refresh();
    app.docRegistry.addWidgetExtension('Notebook', new RunAsStep(panel, app));
  }
};

export default plugin;
