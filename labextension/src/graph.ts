// The step graph: a layered drawing of the DAG (logic.layoutDag), each step coloured by its state. Steps are
// reachable from the keyboard as one group (a roving tabindex, as in ARIA's toolbar pattern): Tab reaches the selected
// step, arrows move between steps, Enter or Space selects one, and Tab again leaves the graph.
import { Widget } from '@lumino/widgets';
import { svg } from './dom';
import { describe, layoutDag, neighbour, stateColour, stepForPath } from './logic';
import { PipelineModel } from './model';

const NODE_W = 112;
const NODE_H = 34;

export class GraphView extends Widget {
  constructor(private readonly model: PipelineModel) {
    super();
    this.addClass('mlops-graph');
    model.stateChanged.connect(this.update, this);
  }

  protected onUpdateRequest(): void {
    const steps = this.model.state?.steps ?? [];
    const focused = (document.activeElement as Element | null)?.getAttribute?.('data-step');
    const tabStop = focused ?? this.model.selected ?? steps[0]?.name;
    const active = stepForPath(steps, this.model.path)?.name;
    const placed = layoutDag(steps, NODE_W, NODE_H);
    const width = Math.max(...placed.map(p => p.x + NODE_W), NODE_W) + 4;
    const height = Math.max(...placed.map(p => p.y + NODE_H), NODE_H) + 4;
    const root = svg('svg', { width, height, class: 'mlops-dag', role: 'group', 'aria-label': 'pipeline steps' });
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
      const g = svg('g', {
        class: 'mlops-node', 'data-step': s.name, 'data-state': s.state, transform: `translate(${p.x + 2},${p.y + 2})`,
        tabindex: s.name === tabStop ? 0 : -1, role: 'button', 'aria-label': `${s.name}: ${describe(s)}`, 'aria-pressed': String(s.name === this.model.selected)
      });
      const classes = ['mlops-box', s.name === active ? 'mlops-active' : '', s.name === this.model.selected ? 'mlops-selected' : ''];
      g.appendChild(svg('rect', { width: NODE_W, height: NODE_H, rx: 5, fill: stateColour(s.state), class: classes.join(' ') }));
      const label = svg('text', { x: 8, y: 14, class: 'mlops-label' });
      label.textContent = s.name;
      const sub = svg('text', { x: 8, y: 28, class: 'mlops-sub' });
      sub.textContent = s.state === 'running' && s.progress ? `cell ${s.progress.cell + 1}/${s.progress.cells}` : s.state;
      const tip = svg('title', {});
      tip.textContent = describe(s);
      g.append(label, sub, tip);
      g.addEventListener('click', () => this.model.select(s.name));
      g.addEventListener('keydown', (e: Event) => this.onKey(e as KeyboardEvent, s.name, placed));
      root.appendChild(g);
    }
    this.node.replaceChildren(root);
    if (focused) {
      (this.node.querySelector(`g[data-step="${focused}"]`) as SVGGElement | null)?.focus(); // keep the keyboard's place
    }
  }

  private onKey(e: KeyboardEvent, step: string, placed: ReturnType<typeof layoutDag>): void {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      this.model.select(step);
      return;
    }
    const next = neighbour(placed, step, e.key);
    const target = next && (this.node.querySelector(`g[data-step="${next}"]`) as SVGGElement | null);
    if (target) {
      e.preventDefault();
      (e.currentTarget as SVGGElement).setAttribute('tabindex', '-1');
      target.setAttribute('tabindex', '0');
      target.focus();
    }
  }
}
