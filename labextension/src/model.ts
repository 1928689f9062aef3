// The panel's model: what the server says about the pipeline of the notebook being edited, polled, and the user's
// choices (profile, executor, the selected step). No DOM here: the views draw it, and the node unit tests drive it
// with a stand-in server (src/test/model.test.ts).
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { busy, Step, stepForPath } from './logic';

export interface Job {
  id: string;
  args: string[];
  status: string;
  run_id: string | null;
  log: string[];
}
export interface State {
  project: string;
  name: string;
  profiles: string[];
  executor: string;
  steps: Step[];
  jobs: Job[];
}
export interface Param {
  name: string;
  type: string;
  value: unknown;
}
export interface Gate {
  gate: string;
  rule: string;
  passed: boolean;
  detail: string;
}
export interface Model {
  model: string;
  versions: { version: number; metrics: Record<string, number>; signed_by?: string | null }[];
  aliases: Record<string, number>;
  declared: Record<string, number | null>;
}
export interface RunRecord {
  run_id: string;
  metrics: Record<string, number>;
}

/** How the model reaches the server (`api.ts` in JupyterLab; a stand-in in the unit tests). */
export interface Server {
  get<T>(endpoint: string, query: Record<string, string>): Promise<T>;
  post<T>(endpoint: string, body: unknown): Promise<T>;
}

export const SLOW_MS = 5000; // how often the state is asked for
export const FAST_MS = 1500; // ... while a step or a run started here is running

export class PipelineModel implements IDisposable {
  path = ''; // the file being edited: its project is shown and its step highlighted
  profile = ''; // '' = mlops.yaml's default parameters
  executor = ''; // '' = mlops.yaml's executor
  selected: string | null = null;
  state: State | null = null;
  message = ''; // why there is no state
  refused = ''; // why the last run asked for was refused (until the next one starts)
  models: Model[] | string = []; // or why they could not be read
  private readonly changed = new Signal<this, void>(this);
  private readonly poll: Poll | null;
  private disposed = false;

  constructor(private readonly server: Server, polling = true) {
    this.poll = polling
      ? new Poll({ factory: () => this.refresh(), frequency: { interval: SLOW_MS, backoff: false }, standby: 'when-hidden', name: 'mlops-nb:state' })
      : null;
  }

  /** Emitted whenever anything the views draw changed: the state, the models, the selection or a message. */
  get stateChanged(): ISignal<this, void> {
    return this.changed;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (!this.disposed) {
      this.disposed = true;
      this.poll?.dispose();
      Signal.clearData(this);
    }
  }

  /** The step drawn in the detail view. */
  get step(): Step | undefined {
    return this.state?.steps.find(s => s.name === this.selected);
  }

  setPath(path: string): void {
    if (path !== this.path) {
      this.path = path;
      const step = this.state ? stepForPath(this.state.steps, path) : undefined;
      this.selected = step?.name ?? this.selected;
      void this.refresh();
    }
  }

  select(step: string): void {
    if (step !== this.selected) {
      this.selected = step;
      this.changed.emit();
    }
  }

  setProfile(profile: string): void {
    this.profile = profile;
    void this.refresh();
  }

  /** Ask the server for the state and the models now; poll fast while something runs. */
  async refresh(): Promise<void> {
    try {
      this.state = await this.server.get<State>('state', { path: this.path, profile: this.profile });
      this.message = '';
      const active = stepForPath(this.state.steps, this.path);
      if (!this.selected || !this.state.steps.some(s => s.name === this.selected)) {
        this.selected = (active ?? this.state.steps[0])?.name ?? null;
      }
    } catch (e) {
      this.state = null;
      this.message = `No mlops_nb project here: ${(e as Error).message}`;
    }
    this.models = this.state ? await this.server.get<Model[]>('models', { path: this.path }).catch(e => (e as Error).message) : [];
    if (this.poll && !this.disposed) {
      const interval = this.state && busy(this.state.steps, this.state.jobs) ? FAST_MS : SLOW_MS;
      if (this.poll.frequency.interval !== interval) {
        this.poll.frequency = { interval, backoff: false, max: interval };
      }
    }
    if (!this.disposed) {
      this.changed.emit();
    }
  }

  /** Start `mlops-nb run` for a step, from a step, or the whole pipeline; the error, if it was refused. */
  async run(action: 'step' | 'from' | 'all', step: string | null, params: Record<string, string> = {}): Promise<string | null> {
    let error: string | null = null;
    try {
      await this.server.post('run', { path: this.path, action, step, params, profile: this.profile, executor: this.executor });
    } catch (e) {
      error = (e as Error).message;
    }
    this.refused = error ?? '';
    await this.refresh();
    return error;
  }

  params(step: string): Promise<Param[]> {
    return this.server.get<Param[]>('params', { path: this.path, step, profile: this.profile });
  }

  /** Check `values` with the runner's own rules (nothing starts); the error, if any. */
  checkParams(step: string, values: Record<string, string>): Promise<string | null> {
    return this.server
      .post('params', { path: this.path, step, profile: this.profile, params: values })
      .then(() => null)
      .catch(e => (e as Error).message);
  }

  history(step: string): Promise<RunRecord[]> {
    return this.server.get<RunRecord[]>('history', { path: this.path, step }).catch((): RunRecord[] => []);
  }

  gates(model: string, version: string): Promise<Gate[]> {
    return this.server.get<Gate[]>('gates', { path: this.path, model, version });
  }

  promote(model: string, version: number): Promise<{ gates: Gate[]; refused?: string }> {
    return this.server
      .post<{ gates: Gate[]; refused?: string }>('promote', { path: this.path, model, version })
      .catch(e => ({ gates: [], refused: (e as Error).message }));
  }

  /** Build the report site; where its run pages are. */
  report(): Promise<{ runs: string }> {
    return this.server.post<{ runs: string }>('report', { path: this.path });
  }
}
