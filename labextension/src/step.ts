// The selected step: its state and metrics, where it failed, what can be done with it (a toolbar of JupyterLab's
// own buttons), its parameters (checked by the runner's rules as they are typed) and its metrics over runs.
import { fastForwardIcon, launchIcon, notebookIcon, runIcon, Styling, Toolbar, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { button, el, svg } from './dom';
import { describe, sparkline, Step } from './logic';
import { PipelineModel } from './model';

export interface StepActions {
  open(path: string, toFailure?: boolean): void; // a notebook, or an executed one at the cell that raised
  openReport(step: Step): void; // the step's page of the report site
}

export class StepView extends Widget {
  private drawn = 0; // the latest drawing: an older one still awaiting the server must not replace it
  private shown = ''; // what is drawn: the same step in the same state is not drawn again
  private readonly values = new Map<string, Record<string, string>>(); // parameters typed, per step
  private actions: Toolbar | null = null;

  constructor(private readonly model: PipelineModel, private readonly open: StepActions) {
    super();
    this.addClass('mlops-detail');
    model.stateChanged.connect(this.update, this);
  }

  protected onUpdateRequest(): void {
    const step = this.model.step;
    const key = JSON.stringify([step, this.model.profile]);
    const typing = this.node.contains(document.activeElement) && document.activeElement instanceof HTMLInputElement;
    if (key === this.shown || (typing && this.node.querySelector(`.mlops-step[data-step="${step?.name}"]`))) {
      return; // not under someone typing a parameter of this step
    }
    this.shown = key;
    void this.draw(step);
  }

  private async draw(step: Step | undefined): Promise<void> {
    const drawing = ++this.drawn;
    if (!step) {
      this.node.replaceChildren();
      return;
    }
    const box = el('div', { class: 'mlops-step', 'data-step': step.name });
    box.append(el('h3', {}, step.name), el('div', { class: `mlops-state mlops-state-${step.state.replace(' ', '-')}` }, describe(step)));
    box.append(...this.metrics(step), ...this.error(step));
    const actions = this.toolbar(step);
    const [form, history] = await Promise.all([this.params(step), this.history(step)]);
    if (drawing !== this.drawn) {
      actions.dispose();
      return;
    }
    this.actions?.dispose();
    this.actions = actions;
    this.node.replaceChildren(box);
    Widget.attach(actions, box);
    box.append(form, history);
  }

  private metrics(step: Step): HTMLElement[] {
    const rows = Object.entries(step.metrics).map(([k, v]) => {
      const row = el('tr');
      row.append(el('td', {}, k), el('td', {}, Number(v).toPrecision(4)));
      return row;
    });
    const table = el('table', { class: 'mlops-metrics' });
    table.append(...rows);
    return rows.length ? [table] : [];
  }

  private error(step: Step): HTMLElement[] {
    if (!step.error) {
      return [];
    }
    const where = `step '${step.name}' failed in ${step.notebook}${step.error.cell ? `, cell ${step.error.cell}` : ''}`;
    return [el('pre', { class: 'mlops-error' }, [where, `${step.error.ename}: ${step.error.evalue}`, ...step.error.tail].join('\n'))];
  }

  private toolbar(step: Step): Toolbar {
    const bar = new Toolbar();
    bar.addClass('mlops-actions');
    const add = (name: string, props: ConstructorParameters<typeof ToolbarButton>[0]) => bar.addItem(name, new ToolbarButton(props));
    add('run-step', { className: 'mlops-run-step', icon: runIcon, label: 'Run this step', onClick: () => void this.model.run('step', step.name) });
    add('run-from', { className: 'mlops-run-from', icon: fastForwardIcon, label: 'Run from here', onClick: () => void this.model.run('from', step.name) });
    add('open', { className: 'mlops-open-notebook', icon: notebookIcon, label: 'Open notebook', onClick: () => this.open.open(step.notebook) });
    add('executed', {
      className: 'mlops-open-executed', icon: launchIcon, label: step.error ? 'Open where it failed' : 'Open executed notebook',
      enabled: !!step.executed, onClick: () => this.open.open(step.executed!, true)
    });
    add('report', { className: 'mlops-open-report', label: 'Open report page', enabled: !!step.run_id, onClick: () => this.open.openReport(step) });
    return bar;
  }

  private async params(step: Step): Promise<HTMLElement> {
    const form = el('form', { class: 'mlops-params' });
    form.appendChild(el('h4', {}, 'Parameters'));
    const params = await this.model.params(step.name).catch(e => (e as Error).message);
    if (typeof params === 'string') {
      form.appendChild(el('div', { class: 'mlops-param-error' }, params));
      return form;
    }
    const values = this.values.get(step.name) ?? {};
    const error = el('div', { class: 'mlops-param-error', role: 'alert' });
    for (const p of params) {
      const input = el('input', { name: p.name, 'data-type': p.type, type: p.type === 'bool' ? 'checkbox' : 'text' });
      if (p.type === 'bool') {
        input.checked = values[p.name] !== undefined ? values[p.name] === 'true' : Boolean(p.value);
      } else {
        input.value = values[p.name] ?? (typeof p.value === 'string' ? p.value : JSON.stringify(p.value));
      }
      input.onchange = () => {
        values[p.name] = p.type === 'bool' ? String(input.checked) : input.value;
        this.values.set(step.name, values);
        void this.model.checkParams(step.name, values).then(e => (error.textContent = e ?? ''));
      };
      const label = el('label', {}, `${p.name} (${p.type}) `);
      label.appendChild(input);
      form.appendChild(label);
    }
    Styling.styleNode(form);
    form.onsubmit = ev => {
      ev.preventDefault();
      void this.model.run('step', step.name, values).then(e => (error.textContent = e ?? ''));
    };
    const go = button('Run with these values', 'mlops-run-params', () => form.requestSubmit(), true);
    form.append(go, error);
    return form;
  }

  private async history(step: Step): Promise<HTMLElement> {
    const box = el('div', { class: 'mlops-history' });
    const runs = await this.model.history(step.name);
    const names = [...new Set(runs.flatMap(r => Object.keys(r.metrics)))].slice(0, 4);
    for (const name of names) {
      const values = runs.map(r => r.metrics[name]).filter(v => v !== undefined);
      const chart = svg('svg', { width: 80, height: 20, class: 'mlops-spark', role: 'img', 'aria-label': `${name} over ${values.length} runs` });
      chart.appendChild(svg('path', { d: sparkline(values, 80, 20), class: 'mlops-spark-line' }));
      const row = el('div', { class: 'mlops-trend', 'data-metric': name });
      row.append(el('span', { title: name }, name), chart as unknown as HTMLElement, el('span', {}, ` ${values[values.length - 1]?.toPrecision(4) ?? ''}`));
      box.appendChild(row);
    }
    if (names.length) {
      box.prepend(el('h4', {}, `Metrics over the last ${runs.length} runs`));
    }
    return box;
  }
}
