import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PipelineModel, Server, State } from '../model';
import { Step } from '../logic';

const step = (name: string, needs: string[] = [], state = 'done'): Step => ({
  name, needs, notebook: `notebooks/${name}.ipynb`, state: state as Step['state'], reason: '', run_id: 'r1', metrics: {},
  error: null, executed: null, progress: null
});

/** A stand-in for the server half: answers from `state`, records every request, refuses what `refuse` names. */
function server(state: State, refuse: Record<string, string> = {}): Server & { asked: [string, unknown][] } {
  const asked: [string, unknown][] = [];
  const answer = async (endpoint: string, what: unknown) => {
    asked.push([endpoint, what]);
    if (refuse[endpoint]) {
      throw new Error(refuse[endpoint]);
    }
    return (endpoint === 'state' ? state : endpoint === 'models' ? [] : {}) as never;
  };
  return { asked, get: answer, post: answer };
}

const diamond: State = {
  project: 'd', name: 'diamond', profiles: ['pr'], executor: 'local', jobs: [],
  steps: [step('a'), step('b', ['a']), step('c', ['a'], 'stale'), step('d', ['b', 'c'], 'never run')]
};

test('the model follows the notebook being edited, and says so once per change', async () => {
  const s = server(diamond);
  const model = new PipelineModel(s, false);
  let changes = 0;
  model.stateChanged.connect(() => changes++);
  model.setPath('notebooks/c.ipynb');
  await model.refresh();
  assert.equal(model.state?.name, 'diamond');
  assert.equal(model.selected, 'c');
  assert.equal(model.step?.state, 'stale');
  assert.ok(changes >= 1);
  const before = changes;
  model.select('d');
  model.select('d'); // no change, no signal
  assert.equal(changes, before + 1);
  assert.deepEqual(s.asked.find(([e]) => e === 'state')?.[1], { path: 'notebooks/c.ipynb', profile: '' });
  model.dispose();
  assert.ok(model.isDisposed);
});

test('a folder without a project, and a refused run, are messages', async () => {
  const model = new PipelineModel(server(diamond, { state: 'no mlops.yaml here', run: "unknown step 'x'" }), false);
  await model.refresh();
  assert.equal(model.state, null);
  assert.equal(model.message, 'No mlops_nb project here: no mlops.yaml here');
  assert.equal(await model.run('step', 'x'), "unknown step 'x'");
  assert.equal(model.refused, "unknown step 'x'");
});

test('a run is asked with the profile and executor chosen', async () => {
  const s = server(diamond);
  const model = new PipelineModel(s, false);
  model.executor = 'warm';
  model.setProfile('pr');
  assert.equal(await model.run('from', 'b', { n: '3' }), null);
  assert.deepEqual(s.asked.find(([e]) => e === 'run')?.[1],
    { path: '', action: 'from', step: 'b', params: { n: '3' }, profile: 'pr', executor: 'warm' });
});
