import { test } from 'node:test';
import assert from 'node:assert/strict';
import { busy, describe, layoutDag, neighbour, sparkline, stateColour, stepForPath, Step } from '../logic';

const step = (name: string, needs: string[] = [], extra: Partial<Step> = {}): Step => ({
  name,
  needs,
  notebook: `notebooks/${name}.ipynb`,
  state: 'done',
  reason: '',
  run_id: 'r1',
  metrics: {},
  error: null,
  executed: `runs/r1/${name}/${name}.ipynb`,
  progress: null,
  ...extra
});

test('each state has its own colour, an unknown one is grey', () => {
  const states = ['never run', 'running', 'done', 'cached', 'failed', 'interrupted', 'stale'];
  assert.equal(new Set(states.map(stateColour)).size, states.length);
  assert.equal(stateColour('failed'), '#c62828');
  assert.equal(stateColour('something new'), '#9e9e9e');
});

test('a chain is laid out one layer per step; independent steps share a layer', () => {
  const placed = layoutDag([step('ingest'), step('a', ['ingest']), step('b', ['ingest']), step('train', ['a', 'b'])]);
  assert.deepEqual(
    placed.map(p => [p.name, p.layer, p.column]),
    [
      ['ingest', 0, 0],
      ['a', 1, 0],
      ['b', 1, 1],
      ['train', 2, 0]
    ]
  );
  assert.ok(placed[2].x > placed[1].x && placed[3].y > placed[1].y);
});

test('the layout ignores unknown needs and survives a cycle', () => {
  const placed = layoutDag([step('a', ['b', 'ghost']), step('b', ['a'])]);
  assert.equal(placed.length, 2);
});

test('a notebook path finds its step, by source or executed notebook', () => {
  const steps = [step('ingest'), step('train', ['ingest'])];
  assert.equal(stepForPath(steps, 'notebooks/train.ipynb')?.name, 'train');
  assert.equal(stepForPath(steps, 'runs/r1/ingest/ingest.ipynb')?.name, 'ingest');
  assert.equal(stepForPath(steps, 'other.ipynb'), undefined);
  assert.equal(stepForPath(steps, null), undefined);
});

test('a step says where it is', () => {
  assert.equal(describe(step('t', [], { state: 'stale', reason: 'code changed' })), 'stale: code changed');
  assert.equal(describe(step('t', [], { state: 'running', progress: { cell: 2, cells: 7 } })), 'running: cell 3/7');
  const failed = step('t', [], { state: 'failed', error: { cell: 4, ename: 'ValueError', evalue: 'bad', tail: [] } });
  assert.equal(describe(failed), 'failed in notebooks/t.ipynb, cell 4: ValueError: bad');
});

test('a sparkline spans its box, higher values higher up', () => {
  const d = sparkline([1, 3, 2], 100, 20);
  assert.equal(d, 'M2.0,18.0 L50.0,2.0 L98.0,10.0');
  assert.equal(sparkline([], 100, 20), '');
  assert.equal(sparkline([5], 100, 20), 'M2.0,18.0');
});

test('the panel polls fast only while something runs', () => {
  assert.equal(busy([step('a')], [{ status: 'done' }]), false);
  assert.equal(busy([step('a', [], { state: 'running' })], []), true);
  assert.equal(busy([step('a')], [{ status: 'running' }]), true);
});

test('arrow keys move between the steps of a diamond', () => {
  const placed = layoutDag([step('a'), step('b', ['a']), step('c', ['a']), step('d', ['b', 'c'])]);
  assert.equal(neighbour(placed, 'a', 'ArrowDown'), 'b');
  assert.equal(neighbour(placed, 'b', 'ArrowRight'), 'c');
  assert.equal(neighbour(placed, 'c', 'ArrowLeft'), 'b');
  assert.equal(neighbour(placed, 'c', 'ArrowDown'), 'd');
  assert.equal(neighbour(placed, 'd', 'ArrowUp'), 'b');
  assert.equal(neighbour(placed, 'a', 'ArrowUp'), undefined);
  assert.equal(neighbour(placed, 'b', 'ArrowLeft'), undefined);
  assert.equal(neighbour(placed, 'a', 'Tab'), undefined);
});
