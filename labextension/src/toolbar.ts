// The panel's toolbar: the parameter profile and the executor, Run all and Refresh, as JupyterLab's own toolbars are.
import { fastForwardIcon, refreshIcon, Styling, Toolbar, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { el } from './dom';
import { PipelineModel } from './model';

function selectWidget(select: HTMLSelectElement): Widget {
  const w = new Widget({ node: Styling.wrapSelect(select) });
  w.addClass('mlops-select');
  return w;
}

export class PipelineToolbar extends Toolbar {
  private readonly profile = el('select', { class: 'mlops-profile', title: 'parameter profile', 'aria-label': 'parameter profile' });
  private readonly executor = el('select', { class: 'mlops-executor', title: 'executor', 'aria-label': 'executor' });

  constructor(private readonly model: PipelineModel, refresh: () => void) {
    super();
    this.addClass('mlops-toolbar');
    for (const name of ['', 'local', 'warm', 'dask']) {
      this.executor.appendChild(el('option', { value: name }, name || 'executor: from mlops.yaml'));
    }
    this.profile.onchange = () => model.setProfile(this.profile.value);
    this.executor.onchange = () => (model.executor = this.executor.value);
    this.addItem('profile', selectWidget(this.profile));
    this.addItem('executor', selectWidget(this.executor));
    this.addItem('run-all', new ToolbarButton({
      className: 'mlops-run-all', icon: fastForwardIcon, label: 'Run all', tooltip: 'Run the whole pipeline (cached steps are reused)',
      onClick: () => void model.run('all', null)
    }));
    this.addItem('refresh', new ToolbarButton({
      className: 'mlops-refresh', icon: refreshIcon, tooltip: 'Ask again (and re-check the gates)', onClick: refresh
    }));
    model.stateChanged.connect(this.update, this);
  }

  protected onUpdateRequest(): void {
    const profiles = this.model.state?.profiles ?? [];
    if (this.profile.options.length !== profiles.length + 1) {
      this.profile.replaceChildren(...['', ...profiles].map(name => el('option', { value: name }, `profile: ${name || 'default'}`)));
      this.profile.value = this.model.profile;
    }
  }
}
