// The Pipeline in-process: a fake source (test/support/fakes.ts, so the test
// decides exactly which read fails and when) and the real writer on a temp dir.
// The e2e tests reach the same code through the CLI against moto.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { versionMoved } from '../../agent/pipeline.ts';
import { sameSource, type SecretValue } from '../../agent/types.ts';
import { makeCore, type Core } from '../support/fakes.ts';

const FILES = `  - path: a.txt
    template: "a={{ secrets.a.key }}"
  - path: b.txt
    secret: b`;

describe('Pipeline', () => {
  let core: Core | undefined;
  afterEach(async () => {
    await core?.cleanup();
    core = undefined;
  });

  const ready = async (): Promise<Core> => {
    core = await makeCore({ a: 'app/a', b: 'app/b' }, FILES);
    core.source.set('app/a', '{"key":"1"}');
    core.source.set('app/b', 'b1');
    return core;
  };

  it('lenient commit: a file whose template fails keeps its last good bytes while the others refresh', async () => {
    const c = await ready();
    const p = c.pipeline();
    assert.equal((await p.load(p.config.secrets)).size, 0);
    await c.writer.prepare();
    const first = await p.commit('strict');
    assert.deepEqual(first.write?.changed, ['a.txt', 'b.txt']);

    c.source.set('app/a', 'not json: the template reads a key it lacks');
    c.source.set('app/b', 'b2');
    assert.equal((await p.load(p.config.secrets)).size, 0);
    const out = await p.commit('lenient');
    assert.deepEqual(
      out.renderErrors.map((e) => e.file),
      ['a.txt'],
    );
    assert.deepEqual(out.write?.changed, ['b.txt']);
    assert.equal(await readFile(join(c.outDir, 'a.txt'), 'utf8'), 'a=1');
    assert.equal(await readFile(join(c.outDir, 'b.txt'), 'utf8'), 'b2');
  });

  it('strict commit: any render error means nothing is written', async () => {
    const c = await ready();
    c.source.set('app/a', 'no key here');
    const p = c.pipeline();
    await p.load(p.config.secrets);
    await c.writer.prepare();
    const out = await p.commit('strict');
    assert.equal(out.write, undefined);
    assert.equal(out.renderErrors.length, 1);
    assert.equal(c.writer.generations, 0);
  });

  it('last known good: a failed fetch keeps the value in use, and the files stay as they are', async () => {
    const c = await ready();
    const p = c.pipeline();
    await p.load(p.config.secrets);
    await c.writer.prepare();
    await p.commit('lenient');
    const held = p.values.get('b');

    c.source.fail('app/b', 'InternalServiceError', true);
    const failures = await p.load(p.config.secrets.filter((s) => s.name === 'b'));
    assert.deepEqual([...failures.keys()], ['b']);
    assert.equal(p.values.get('b'), held);
    const out = await p.commit('lenient');
    assert.deepEqual(out.write?.changed, []);
    assert.equal(c.writer.generations, 1);
    assert.equal(await readFile(join(c.outDir, 'b.txt'), 'utf8'), 'b1');
  });

  it('accept takes a value only when its version moved (level 1 of "did anything change?")', async () => {
    const c = await ready();
    const p = c.pipeline();
    const v = (versionId: string): SecretValue => ({ arn: 'arn', name: 'app/b', versionId, versionStages: ['AWSCURRENT'], secretString: versionId });
    const first = v('v1');
    assert.equal(p.accept('b', first), true, 'the first value is taken');
    assert.equal(p.accept('b', v('v1')), false, 'the same version again is not a change');
    assert.equal(p.values.get('b'), first, 'and does not replace the value held');
    assert.equal(p.accept('b', v('v2')), true);
    assert.equal(p.values.get('b')?.versionId, 'v2');

    assert.equal(versionMoved(undefined, 'v1'), true, 'nothing held: fetch');
    assert.equal(versionMoved(first, undefined), true, 'no version carries the stage: fetch (and let it fail)');
    assert.equal(versionMoved(first, 'v1'), false);
    assert.equal(versionMoved(first, 'v2'), true);
  });

  it('sameSource: same id, stage and pinned version; the local name and interval do not matter', () => {
    assert.equal(sameSource({ name: 'a', id: 'x', versionStage: 'AWSCURRENT' }, { name: 'b', id: 'x', versionStage: 'AWSCURRENT', refreshIntervalMs: 5 }), true);
    assert.equal(sameSource({ name: 'a', id: 'x', versionStage: 'AWSCURRENT' }, { name: 'a', id: 'x', versionStage: 'AWSPENDING' }), false);
    assert.equal(sameSource({ name: 'a', id: 'x', versionStage: 'AWSCURRENT' }, { name: 'a', id: 'y', versionStage: 'AWSCURRENT' }), false);
    assert.equal(sameSource({ name: 'a', id: 'x', versionId: '1' }, { name: 'a', id: 'x', versionId: '2' }), false);
  });
});
