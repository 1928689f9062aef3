// What the panel computes without drawing: colours, the graph layout, which step a notebook is, a sparkline.
// Plain functions, unit-tested with node's test runner (src/test/logic.test.ts).

export type StepState = 'never run' | 'running' | 'done' | 'cached' | 'failed' | 'interrupted' | 'stale';

export interface StepError {
  cell: number | null;
  ename: string;
  evalue: string;
  tail: string[];
}

export interface Step {
  name: string;
  needs: string[];
  notebook: string;
  state: StepState;
  reason: string;
  run_id: string;
  metrics: Record<string, number>;
  error: StepError | null;
  executed: string | null;
  progress: { cell: number; cells: number } | null;
}

const COLOURS: Record<StepState, string> = {
  'never run': '#9e9e9e',
  running: '#1976d2',
  done: '#2e7d32',
  cached: '#81c784',
  failed: '#c62828',
  interrupted: '#ef6c00',
  stale: '#f9a825'
};

/** The fill colour of a step in the state `state` (grey for a state this version does not know). */
export function stateColour(state: string): string {
  return COLOURS[state as StepState] ?? '#9e9e9e';
}

/** One line saying where a step is: its state, why it is stale, the cell it is at, or where it failed. */
export function describe(step: Step): string {
  if (step.state === 'running' && step.progress) {
    return `running: cell ${step.progress.cell + 1}/${step.progress.cells}`;
  }
  if (step.state === 'stale' && step.reason) {
    return `stale: ${step.reason}`;
  }
  if (step.state === 'failed' && step.error) {
    const where = step.error.cell ? `cell ${step.error.cell}: ` : '';
    return `failed in ${step.notebook}, ${where}${step.error.ename}: ${step.error.evalue}`;
  }
  return step.state;
}

export interface Placed {
  name: string;
  layer: number;
  column: number;
  x: number;
  y: number;
}

/**
 * A layered layout of the step graph for a narrow sidebar: a step's layer (row, top to bottom) is one more than its
 * deepest prerequisite's; steps of one layer sit side by side in declaration order. Unknown needs are ignored and a
 * cycle does not loop (mlops.yaml refuses both anyway).
 */
export function layoutDag(
  steps: { name: string; needs: string[] }[],
  width = 130,
  height = 34,
  gapX = 16,
  gapY = 22
): Placed[] {
  const byName = new Map(steps.map(s => [s.name, s]));
  const layer = new Map<string, number>();
  const depth = (name: string, path: Set<string>): number => {
    const known = layer.get(name);
    if (known !== undefined) {
      return known;
    }
    const step = byName.get(name);
    if (!step || path.has(name)) {
      return 0;
    }
    path.add(name);
    const d = Math.max(-1, ...step.needs.filter(n => byName.has(n)).map(n => depth(n, path))) + 1;
    path.delete(name);
    layer.set(name, d);
    return d;
  };
  const columns = new Map<number, number>();
  return steps.map(s => {
    const l = depth(s.name, new Set());
    const c = columns.get(l) ?? 0;
    columns.set(l, c + 1);
    return { name: s.name, layer: l, column: c, x: c * (width + gapX), y: l * (height + gapY) };
  });
}

/** The step whose notebook (or last executed notebook) is at `path`, if any. */
export function stepForPath(steps: Step[], path: string | null | undefined): Step | undefined {
  if (!path) {
    return undefined;
  }
  return steps.find(s => s.notebook === path || s.executed === path);
}

/** An SVG path through `values` scaled into width x height (higher values higher up); '' for no values. */
export function sparkline(values: number[], width: number, height: number, pad = 2): string {
  if (values.length === 0) {
    return '';
  }
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  const step = values.length > 1 ? (width - 2 * pad) / (values.length - 1) : 0;
  return values
    .map((v, i) => {
      const x = pad + i * step;
      const y = height - pad - ((v - lo) / span) * (height - 2 * pad);
      return `${i === 0 ? 'M' : 'L'}${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}

/** Whether the panel should poll fast: a step is running or a run started from the panel has not ended. */
export function busy(steps: Step[], jobs: { status: string }[]): boolean {
  return steps.some(s => s.state === 'running') || jobs.some(j => j.status === 'running');
}

/**
 * The step an arrow key moves the keyboard to from `name` in a layout: beside it in its layer (ArrowLeft,
 * ArrowRight), or the nearest step of the layer above or below (ArrowUp, ArrowDown); undefined at an edge.
 */
export function neighbour(placed: Placed[], name: string, key: string): string | undefined {
  const from = placed.find(p => p.name === name);
  if (!from) {
    return undefined;
  }
  if (key === 'ArrowLeft' || key === 'ArrowRight') {
    const column = from.column + (key === 'ArrowLeft' ? -1 : 1);
    return placed.find(p => p.layer === from.layer && p.column === column)?.name;
  }
  if (key === 'ArrowUp' || key === 'ArrowDown') {
    const layer = from.layer + (key === 'ArrowUp' ? -1 : 1);
    const row = placed.filter(p => p.layer === layer).sort((a, b) => Math.abs(a.x - from.x) - Math.abs(b.x - from.x));
    return row[0]?.name;
  }
  return undefined;
}
