// The pipeline panel: a container, as JupyterLab's own panels are. The model (model.ts) holds the state and polls;
// each view draws one part of it: the toolbar, the step graph, the selected step, the runs started here, the models.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Panel, Widget } from '@lumino/widgets';
import { post, requestAPI } from './api';
import { el } from './dom';
import { GraphView } from './graph';
import { JobsView } from './jobs';
import { Step } from './logic';
import { PipelineModel } from './model';
import { RegistryView } from './registry';
import { StepView } from './step';
import { PipelineToolbar } from './toolbar';

/** Messages: why there is no project here, or why the last run asked for was refused. */
class MessageView extends Widget {
  constructor(private readonly model: PipelineModel) {
    super({ node: el('div', { class: 'mlops-message', role: 'alert' }) });
    model.stateChanged.connect(this.update, this);
  }

  protected onUpdateRequest(): void {
    this.node.textContent = this.model.message || this.model.refused;
  }
}

export class PipelinePanel extends Panel {
  readonly model = new PipelineModel({ get: (e, q) => requestAPI(e, {}, q), post });
  private readonly registry = new RegistryView(this.model);

  constructor(private readonly app: JupyterFrontEnd, private readonly docs: IDocumentManager | null) {
    super();
    this.id = 'mlops-nb-panel';
    this.addClass('mlops-panel');
    this.title.caption = 'mlops_nb pipeline';
    this.title.label = 'Pipeline';
    const title = new Widget({ node: el('h2', { class: 'mlops-title' }, 'Pipeline') });
    const views = [new PipelineToolbar(this.model, () => void this.refresh()), new MessageView(this.model), new GraphView(this.model),
      new StepView(this.model, { open: (p, f) => void this.open(p, f), openReport: s => void this.openReport(s) }),
      new JobsView(this.model), this.registry];
    [title, ...views].forEach(w => this.addWidget(w));
    this.model.stateChanged.connect(() => (this.title.label = this.model.state ? `Pipeline: ${this.model.state.name}` : 'Pipeline'));
  }

  /** The file the user is working on: the panel shows its project and highlights its step. */
  setPath(path: string): void {
    this.model.setPath(path);
  }

  /** Ask the server again now (and re-check the gates). */
  refresh(): Promise<void> {
    this.registry.redraw();
    return this.model.refresh();
  }

  dispose(): void {
    this.model.dispose();
    super.dispose();
  }

  /** Open `path`; for a failed executed notebook, put the cell Papermill marked as raising in view. */
  private async open(path: string, toFailure = false): Promise<void> {
    const widget = this.docs?.openOrReveal(path);
    if (!toFailure || !(widget instanceof NotebookPanel)) {
      return;
    }
    await widget.context.ready;
    const cells = widget.content.widgets;
    const index = cells.findIndex(c => (c.model.getMetadata('papermill') as { exception?: boolean } | undefined)?.exception);
    if (index >= 0) {
      widget.content.activeCellIndex = index;
      void widget.content.scrollToItem(index);
    }
  }

  private async openReport(step: Step): Promise<void> {
    const built = await this.model.report().catch(e => {
      this.model.refused = (e as Error).message;
      return null;
    });
    if (built) {
      const run = step.executed ? step.executed.split('/').slice(-3)[0] : step.run_id;
      void this.app.commands.execute('docmanager:open', { path: `${built.runs}/${run}/${step.name}.html`, factory: 'HTML Viewer' });
    }
  }
}
