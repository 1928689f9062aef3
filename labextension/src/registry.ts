// The models of models.yaml: their published versions (and who signed each), aliases, a version's gates against
// the champion, and Promote, which writes models.yaml: the pull request is the change, reconcile applies it.
import { Styling } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { button, el } from './dom';
import { Model, PipelineModel } from './model';

export class RegistryView extends Widget {
  private shown = ''; // the models drawn: unchanged models are not redrawn, nor their gates asked again

  constructor(private readonly model: PipelineModel) {
    super();
    this.addClass('mlops-models');
    model.stateChanged.connect(this.update, this);
  }

  /** Draw the models again, and ask their gates again (mlops.yaml may have changed them). */
  redraw(): void {
    this.shown = '';
    this.update();
  }

  protected onUpdateRequest(): void {
    const models = this.model.models;
    if (document.activeElement && this.node.contains(document.activeElement)) {
      return; // someone is choosing a version: do not redraw under them
    }
    const shown = JSON.stringify(models);
    if (shown === this.shown) {
      return;
    }
    this.shown = shown;
    if (typeof models === 'string') {
      this.node.replaceChildren(el('h3', {}, 'Models'), el('div', { class: 'mlops-note' }, models));
      return;
    }
    this.node.replaceChildren(...(models.length ? [el('h3', {}, 'Models')] : []), ...models.map(m => this.modelBox(m)));
  }

  private modelBox(m: Model): HTMLElement {
    const box = el('div', { class: 'mlops-model', 'data-model': m.model });
    const aliases = Object.entries(m.aliases).map(([a, v]) => `${a}=v${v}`).join(', ') || 'no aliases';
    box.append(el('h4', {}, `${m.model}: ${aliases}`));
    if (!m.versions.length) {
      box.append(el('div', {}, 'no published versions yet (merging a pipeline change publishes one)'));
      return box;
    }
    const pick = el('select', { class: 'mlops-version', 'aria-label': `${m.model} version` });
    for (const v of m.versions) {
      // who signed it, from the allowed signers on main (nothing: it could not be verified)
      const signed = v.signed_by ? ` ✓ signed by ${v.signed_by}` : '';
      pick.appendChild(el('option', { value: String(v.version) }, `v${v.version}${signed}`));
    }
    pick.value = String(m.versions[m.versions.length - 1].version);
    const gates = el('div', { class: 'mlops-gates' });
    const result = el('div', { class: 'mlops-promote-result', role: 'status' });
    const promote = button('Promote to champion', 'mlops-promote', async () => {
      const r = await this.model.promote(m.model, Number(pick.value));
      result.textContent = r.refused
        ? r.refused
        : `models.yaml: ${m.model}.champion = ${pick.value}. Commit it in a pull request; reconcile applies it after the merge.`;
    }, true);
    const showGates = async () => {
      promote.disabled = true;
      const list = await this.model.gates(m.model, pick.value).catch(e => (e as Error).message);
      if (typeof list === 'string') {
        gates.textContent = list;
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
    box.append(Styling.wrapSelect(pick), gates, promote, result);
    void showGates();
    return box;
  }
}
