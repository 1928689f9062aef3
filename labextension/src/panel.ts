// The pipeline panel: the step graph with live states, the selected step (run it, its parameters, its metrics over
// runs, its notebooks), the runs started here, and the models with their gates and a Promote button.
import { JupyterFrontEnd } from '@jupyterlab/application';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';
import { post, requestAPI } from './api';
import { busy, describe, layoutDag, sparkline, stateColour, Step, stepForPath } from './logic';

interface Job {
  id: string;
  args: string[];
  status: string;
  run_id: string | null;
  log: string[];
}
interface State {
  project: string;
  name: string;
  profiles: string[];
  executor: string;
  steps: Step[];
  jobs: Job[];
}
interface Param {
  name: string;
  type: string;
  value: unknown;
}
interface Gate {
  gate: string;
  rule: string;
  passed: boolean;
  detail: string;
}
interface Model {
  model: string;
  versions: { version: number; metrics: Record<string, number>; signed_by?: string | null }[];
  aliases: Record<string, number>;
  declared: Record<string, number | null>;
}

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 130;
const NODE_H = 34;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text = ''): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
  if (text) {
    e.textContent = text;
  }
  return e;
}

function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, String(v)));
  return e;
}

export class PipelinePanel extends Widget {
  private path = '';
  private selected: string | null = null;
  private state: State | null = null;
  private timer = 0;
  private detailDrawn = 0; // the latest detail drawing: an older one still awaiting the server must not replace it
  private readonly profile = el('select', { class: 'mlops-profile', title: 'parameter profile' });
  private readonly executor = el('select', { class: 'mlops-executor', title: 'executor' });
  private readonly graph = el('div', { class: 'mlops-graph' });
  private readonly detail = el('div', { class: 'mlops-detail' });
  private readonly jobs = el('div', { class: 'mlops-jobs' });
  private readonly modelsBox = el('div', { class: 'mlops-models' });
  private readonly message = el('div', { class: 'mlops-message' });

  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly docs: IDocumentManager | null
  ) {
    super();
    this.id = 'mlops-nb-panel';
    this.addClass('mlops-panel');
    this.title.caption = 'mlops_nb pipeline';
    this.title.label = 'Pipeline';
    for (const name of ['', 'local', 'warm', 'dask']) {
      this.executor.appendChild(el('option', { value: name }, name || 'executor: from mlops.yaml'));
    }
    const bar = el('div', { class: 'mlops-bar' });
    const all = el('button', { class: 'mlops-run-all' }, 'Run all');
    all.onclick = () => void this.run('all', null);
    const refresh = el('button', { class: 'mlops-refresh' }, 'Refresh');
    refresh.onclick = () => {
      this.modelsShown = ''; // also re-check the gates (mlops.yaml may have changed them)
      void this.refresh();
    };
    this.profile.onchange = () => void this.refresh();
    bar.append(this.profile, this.executor, all, refresh);
    this.node.append(el('h2', { class: 'mlops-title' }, 'Pipeline'), bar, this.message, this.graph, this.detail,
      el('h3', {}, 'Runs started here'), this.jobs, el('h3', {}, 'Models'), this.modelsBox);
  }

  /** The file the user is working on: the panel shows its project and highlights its step. */
  setPath(path: string): void {
    if (path !== this.path) {
      this.path = path;
      const step = this.state ? stepForPath(this.state.steps, path) : undefined;
      if (step) {
        this.selected = step.name;
      }
      void this.refresh();
    }
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      this.state = await requestAPI<State>('state', {}, { path: this.path, profile: this.profile.value });
      this.message.textContent = '';
      this.render();
    } catch (e) {
      this.state = null;
      this.graph.textContent = '';
      this.detail.textContent = '';
      this.message.textContent = `No mlops_nb project here: ${(e as Error).message}`;
    }
    const fast = this.state ? busy(this.state.steps, this.state.jobs) : false;
    this.timer = window.setTimeout(() => void this.refresh(), fast ? 1500 : 5000);
  }

  private render(): void {
    const state = this.state!;
    if (this.profile.options.length !== state.profiles.length + 1) {
      const current = this.profile.value;
      this.profile.textContent = '';
      for (const name of ['', ...state.profiles]) {
        this.profile.appendChild(el('option', { value: name }, name ? `profile: ${name}` : 'profile: default'));
      }
      this.profile.value = current;
    }
    this.title.label = `Pipeline: ${state.name}`;
    const active = stepForPath(state.steps, this.path);
    if (!this.selected || !state.steps.some(s => s.name === this.selected)) {
      this.selected = (active ?? state.steps[0])?.name ?? null;
    }
    this.drawGraph(state.steps, active?.name);
    void this.drawDetail();
    this.drawJobs(state.jobs);
    void this.drawModels();
  }

  private drawGraph(steps: Step[], active: string | undefined): void {
    const placed = layoutDag(steps, NODE_W, NODE_H);
    const width = Math.max(...placed.map(p => p.x + NODE_W), NODE_W) + 4;
    const height = Math.max(...placed.map(p => p.y + NODE_H), NODE_H) + 4;
    const root = svg('svg', { width, height, class: 'mlops-dag' });
    const at = new Map(placed.map(p => [p.name, p]));
    for (const s of steps) {
      for (const need of s.needs) {
        const a = at.get(need);
        const b = at.get(s.name);
        if (a && b) {
          root.appendChild(svg('line', { x1: a.x + NODE_W / 2 + 2, y1: a.y + NODE_H + 2, x2: b.x + NODE_W / 2 + 2, y2: b.y + 2, class: 'mlops-edge' }));
        }
      }
    }
    for (const s of steps) {
      const p = at.get(s.name)!;
      const g = svg('g', { class: 'mlops-node', 'data-step': s.name, 'data-state': s.state, transform: `translate(${p.x + 2},${p.y + 2})` });
      const classes = ['mlops-box', s.name === active ? 'mlops-active' : '', s.name === this.selected ? 'mlops-selected' : ''];
      g.appendChild(svg('rect', { width: NODE_W, height: NODE_H, rx: 5, fill: stateColour(s.state), class: classes.join(' ') }));
      const label = svg('text', { x: 8, y: 14, class: 'mlops-label' });
      label.textContent = s.name;
      const sub = svg('text', { x: 8, y: 28, class: 'mlops-sub' });
      sub.textContent = s.state === 'running' && s.progress ? `cell ${s.progress.cell + 1}/${s.progress.cells}` : s.state;
      const tip = svg('title', {});
      tip.textContent = describe(s);
      g.append(label, sub, tip);
      g.addEventListener('click', () => {
        this.selected = s.name;
        this.render();
      });
      root.appendChild(g);
    }
    this.graph.replaceChildren(root);
  }

  private async drawDetail(): Promise<void> {
    const drawing = ++this.detailDrawn;
    const step = this.state?.steps.find(s => s.name === this.selected);
    if (!step) {
      this.detail.replaceChildren();
      return;
    }
    const box = el('div', { class: 'mlops-step', 'data-step': step.name });
    box.append(el('h3', {}, step.name), el('div', { class: `mlops-state mlops-state-${step.state.replace(' ', '-')}` }, describe(step)));
    const metrics = Object.entries(step.metrics);
    if (metrics.length) {
      const table = el('table', { class: 'mlops-metrics' });
      for (const [k, v] of metrics) {
        const row = el('tr');
        row.append(el('td', {}, k), el('td', {}, Number(v).toPrecision(4)));
        table.appendChild(row);
      }
      box.appendChild(table);
    }
    if (step.error) {
      const err = el('pre', { class: 'mlops-error' }, [
        `step '${step.name}' failed in ${step.notebook}${step.error.cell ? `, cell ${step.error.cell}` : ''}`,
        `${step.error.ename}: ${step.error.evalue}`, ...step.error.tail].join('\n'));
      box.appendChild(err);
    }
    const actions = el('div', { class: 'mlops-actions' });
    const button = (label: string, cls: string, fn: () => void, disabled = false) => {
      const b = el('button', { class: cls }, label);
      b.disabled = disabled;
      b.onclick = fn;
      actions.appendChild(b);
    };
    button('Run this step', 'mlops-run-step', () => void this.run('step', step.name));
    button('Run from here', 'mlops-run-from', () => void this.run('from', step.name));
    button('Open notebook', 'mlops-open-notebook', () => void this.open(step.notebook));
    button(step.error ? 'Open where it failed' : 'Open executed notebook', 'mlops-open-executed',
      () => void this.open(step.executed!, true), !step.executed);
    button('Open report page', 'mlops-open-report', () => void this.openReport(step), !step.run_id);
    box.appendChild(actions);
    const [form, history] = await Promise.all([this.paramsForm(step), this.history(step)]);
    box.append(form, history);
    const typing = document.activeElement instanceof HTMLInputElement && this.detail.contains(document.activeElement);
    if (drawing === this.detailDrawn && !(typing && this.detail.querySelector(`.mlops-step[data-step="${step.name}"]`))) {
      this.detail.replaceChildren(box); // not under someone typing a parameter of this step
    }
  }

  private paramValues = new Map<string, Record<string, string>>();
  private modelsShown = ''; // the models drawn: unchanged models are not redrawn, nor their gates asked again

  private async paramsForm(step: Step): Promise<HTMLElement> {
    const form = el('form', { class: 'mlops-params' });
    form.appendChild(el('h4', {}, 'Parameters'));
    let params: Param[] = [];
    try {
      params = await requestAPI<Param[]>('params', {}, { path: this.path, step: step.name, profile: this.profile.value });
    } catch (e) {
      form.appendChild(el('div', { class: 'mlops-param-error' }, (e as Error).message));
      return form;
    }
    const values = this.paramValues.get(step.name) ?? {};
    const error = el('div', { class: 'mlops-param-error' });
    for (const p of params) {
      const input = el('input', { name: p.name, 'data-type': p.type, type: p.type === 'bool' ? 'checkbox' : 'text' });
      if (p.type === 'bool') {
        input.checked = values[p.name] !== undefined ? values[p.name] === 'true' : Boolean(p.value);
      } else {
        input.value = values[p.name] ?? (typeof p.value === 'string' ? p.value : JSON.stringify(p.value));
      }
      input.onchange = () => {
        values[p.name] = p.type === 'bool' ? String(input.checked) : input.value;
        this.paramValues.set(step.name, values);
        post('params', { path: this.path, step: step.name, profile: this.profile.value, params: values })
          .then(() => (error.textContent = ''))
          .catch(e => (error.textContent = (e as Error).message));
      };
      const label = el('label', {}, `${p.name} (${p.type}) `);
      label.appendChild(input);
      form.appendChild(label);
    }
    const go = el('button', { type: 'submit', class: 'mlops-run-params' }, 'Run with these values');
    form.onsubmit = ev => {
      ev.preventDefault();
      void this.run('step', step.name, values, error);
    };
    form.append(go, error);
    return form;
  }

  private async history(step: Step): Promise<HTMLElement> {
    const box = el('div', { class: 'mlops-history' });
    type Run = { run_id: string; metrics: Record<string, number> };
    const runs = await requestAPI<Run[]>('history', {}, { path: this.path, step: step.name }).catch((): Run[] => []);
    const names = [...new Set(runs.flatMap(r => Object.keys(r.metrics)))].slice(0, 4);
    for (const name of names) {
      const values = runs.map(r => r.metrics[name]).filter(v => v !== undefined);
      const chart = svg('svg', { width: 80, height: 20, class: 'mlops-spark' });
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

  private drawJobs(jobs: Job[]): void {
    this.jobs.replaceChildren(
      ...jobs.slice(-3).reverse().map(j => {
        const box = el('div', { class: `mlops-job mlops-job-${j.status}` });
        box.append(el('div', {}, `mlops-nb ${j.args.join(' ')}: ${j.status}`), el('pre', {}, j.log.slice(-8).join('\n')));
        return box;
      })
    );
  }

  private async drawModels(): Promise<void> {
    let models: Model[] = [];
    try {
      models = await requestAPI<Model[]>('models', {}, { path: this.path });
    } catch (e) {
      this.modelsBox.textContent = (e as Error).message;
      this.modelsShown = '';
      return;
    }
    if (document.activeElement && this.modelsBox.contains(document.activeElement)) {
      return; // someone is choosing a version: do not redraw under them
    }
    const shown = JSON.stringify(models);
    if (shown === this.modelsShown) {
      return;
    }
    this.modelsShown = shown;
    const boxes = models.map(m => {
      const box = el('div', { class: 'mlops-model', 'data-model': m.model });
      const aliases = Object.entries(m.aliases).map(([a, v]) => `${a}=v${v}`).join(', ') || 'no aliases';
      box.append(el('h4', {}, `${m.model}: ${aliases}`));
      if (!m.versions.length) {
        box.append(el('div', {}, 'no published versions yet (merging a pipeline change publishes one)'));
        return box;
      }
      const pick = el('select', { class: 'mlops-version' });
      for (const v of m.versions) {
        // who signed it, from the allowed signers on main (nothing: it could not be verified)
        const signed = v.signed_by ? ` ✓ signed by ${v.signed_by}` : '';
        pick.appendChild(el('option', { value: String(v.version) }, `v${v.version}${signed}`));
      }
      pick.value = String(m.versions[m.versions.length - 1].version);
      const gates = el('div', { class: 'mlops-gates' });
      const promote = el('button', { class: 'mlops-promote' }, 'Promote to champion');
      const result = el('div', { class: 'mlops-promote-result' });
      const showGates = async () => {
        promote.disabled = true;
        const list = await requestAPI<Gate[]>('gates', {}, { path: this.path, model: m.model, version: pick.value })
          .catch(e => { gates.textContent = (e as Error).message; return null; });
        if (!list) {
          return;
        }
        const table = el('table', { class: 'mlops-gate-table' });
        for (const g of list) {
          const row = el('tr', { class: g.passed ? 'mlops-pass' : 'mlops-fail' });
          row.append(el('td', {}, g.passed ? 'pass' : 'FAIL'), el('td', {}, `${g.gate} ${g.rule}`), el('td', {}, g.detail));
          table.appendChild(row);
        }
        gates.replaceChildren(table);
        promote.disabled = !list.every(g => g.passed);
      };
      pick.onchange = () => void showGates();
      promote.onclick = async () => {
        const r = await post<{ gates: Gate[]; refused?: string }>('promote', { path: this.path, model: m.model, version: Number(pick.value) })
          .catch(e => ({ gates: [], refused: (e as Error).message }));
        result.textContent = r.refused
          ? r.refused
          : `models.yaml: ${m.model}.champion = ${pick.value}. Commit it in a pull request; reconcile applies it after the merge.`;
      };
      box.append(pick, gates, promote, result);
      void showGates();
      return box;
    });
    this.modelsBox.replaceChildren(...boxes);
  }

  private async run(action: string, step: string | null, params: Record<string, string> = {}, error?: HTMLElement): Promise<void> {
    try {
      await post('run', { path: this.path, action, step, params, profile: this.profile.value, executor: this.executor.value });
      if (error) {
        error.textContent = '';
      }
      this.message.textContent = '';
    } catch (e) {
      (error ?? this.message).textContent = (e as Error).message;
    }
    void this.refresh();
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
    const built = await post<{ runs: string }>('report', { path: this.path }).catch(e => {
      this.message.textContent = (e as Error).message;
      return null;
    });
    if (built) {
      const run = step.executed ? step.executed.split('/').slice(-3)[0] : step.run_id;
      void this.app.commands.execute('docmanager:open', { path: `${built.runs}/${run}/${step.name}.html`, factory: 'HTML Viewer' });
    }
  }
}
