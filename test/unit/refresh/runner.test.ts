// The Runner and the shared first-render loop in-process, with fakes
// (test/support/fakes.ts): a fake source whose checks the test holds and
// releases, and whose secrets it breaks and fixes, and a fake notifier that
// records calls, so timing is controlled exactly and every call is counted.
// The real writer writes to a temp dir. The e2e tests (test/e2e/run, first-render,
// init) drive the same code through the CLI against moto.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { initFirstRender } from '../../../agent/cli/init.ts';
import { AgentMetrics } from '../../../agent/observe/metrics.ts';
import { Runner } from '../../../agent/refresh/runner.ts';
import type { SourceError } from '../../../agent/errors.ts';
import type { SecretMetadata, SecretSpec } from '../../../agent/types.ts';
import { FakeNotifier, makeCore, type Core } from '../../support/fakes.ts';
import { waitUntil } from '../../support/wait.ts';

const THREE = `  - path: a.txt
    secret: a
  - path: b.txt
    secret: b
  - path: c.txt
    template: "c={{ secrets.c.key }}"`;

const metrics = (): AgentMetrics => new AgentMetrics({ version: 'test', processMetrics: false });

describe('Runner', () => {
  let core: Core | undefined;
  let runner: Runner | undefined;
  afterEach(async () => {
    await runner?.stop();
    await core?.cleanup();
    runner = undefined;
    core = undefined;
  });

  /** A runner over a, b, c (c.txt is a template reading secrets.c.key), first render done. */
  const started = async (coalesceMs: number): Promise<{ c: Core; r: Runner; notifier: FakeNotifier }> => {
    const c = (core = await makeCore({ a: 'app/a', b: 'app/b', c: 'app/c' }, THREE));
    c.source.set('app/a', 'a1');
    c.source.set('app/b', 'b1');
    c.source.set('app/c', '{"key":"1"}');
    const notifier = new FakeNotifier();
    const r = (runner = new Runner({ log: c.log, metrics: metrics(), pipeline: c.pipeline(), notifier, coalesceMs }));
    assert.equal(await r.firstRender(), true);
    assert.equal(c.writer.generations, 1);
    return { c, r, notifier };
  };

  it('coalescing: three changes found within the window make one write and one notification', async () => {
    const { c, r, notifier } = await started(1500);
    const release = ['a', 'b', 'c'].map((n) => c.source.hold(n));
    c.source.set('app/a', 'a2');
    c.source.set('app/b', 'b2');
    c.source.set('app/c', '{"key":"2"}');
    r.checkAllNow();
    // One check at a time finds its change: the first one opens the window, the others land in it.
    for (const [i, name] of ['a', 'b', 'c'].entries()) {
      release[i]?.();
      await waitUntil(`${name} accepted`, () => r.pipeline.values.get(name)?.versionId === 'v2');
    }
    assert.equal(c.writer.generations, 1, 'nothing written before the window closes');
    await waitUntil('the notification', () => notifier.calls.length > 0);
    await r.stop(); // lets a commit in flight finish: a second one would be counted
    assert.equal(c.writer.generations, 2);
    assert.deepEqual(
      notifier.calls.map((n) => n.changed),
      [['a.txt', 'b.txt', 'c.txt']],
    );
    assert.equal(await readFile(join(c.outDir, 'c.txt'), 'utf8'), 'c=2');
  });

  it('grouped checks: a source with describeMany gets the due secrets in one call; only the moved one is fetched; a failed member is retried alone', async () => {
    const c = (core = await makeCore({ a: 'app/a', b: 'app/b', c: 'app/c' }, THREE));
    c.source.set('app/a', 'a1');
    c.source.set('app/b', 'b1');
    c.source.set('app/c', '{"key":"1"}');
    const groups: string[][] = [];
    const fake = c.source;
    // The fake's describeMany: one call for many, each answered as describe() would (errors per secret).
    const describeMany = async (specs: readonly SecretSpec[]): Promise<Map<string, SecretMetadata | SourceError>> => {
      groups.push(specs.map((s) => s.name).sort());
      const out = new Map<string, SecretMetadata | SourceError>();
      for (const spec of specs) {
        out.set(spec.name, await fake.describe(spec).catch((err: unknown) => err as SourceError));
        fake.described.pop(); // counted as a group call, not as a describe
      }
      return out;
    };
    Object.assign(c.source, { describeMany });
    const notifier = new FakeNotifier();
    const m = metrics();
    const r = (runner = new Runner({ log: c.log, metrics: m, pipeline: c.pipeline(), notifier, coalesceMs: 100 }));
    assert.equal(await r.firstRender(), true);
    const fetchedBefore = c.source.fetched.length;
    c.source.set('app/b', 'b2');
    c.source.fail('app/c', 'ThrottlingException', true);
    r.checkAllNow();
    await waitUntil('b accepted', () => r.pipeline.values.get('b')?.versionId === 'v2');
    assert.deepEqual(groups, [['a', 'b', 'c']], 'one group call for the three due checks');
    assert.deepEqual(c.source.fetched.slice(fetchedBefore), ['b'], 'only the moved secret fetched');
    // c failed in the group: retried on its own (describe), about 1 s later; heal it and see it succeed.
    c.source.heal('app/c');
    await waitUntil('c re-checked alone', () => c.source.count(c.source.described, 'c') >= 1, 10_000);
    await waitUntil('b on disk', async () => (await readFile(join(c.outDir, 'b.txt'), 'utf8')) === 'b2');
    assert.equal(c.source.count(c.source.described, 'a'), 0, 'a, fine in the group, is not re-checked');
    const text = await m.registry.metrics();
    assert.match(text, /secrets_agent_secret_checks_total\{[^}]*secret="c"[^}]*result="error"[^}]*\} 1/);
    assert.match(text, /secrets_agent_secret_checks_total\{[^}]*secret="a"[^}]*result="success"[^}]*\} 1/);
  });

  it('lenient commits and last known good: a broken template and a failing secret keep their files while another refreshes', async () => {
    const { c, r, notifier } = await started(50);
    c.source.set('app/c', 'not json: the template reads a key it lacks');
    c.source.fail('app/a'); // AccessDenied from now on: the value held keeps serving
    c.source.set('app/b', 'b2');
    r.checkAllNow();
    await waitUntil('the notification', () => notifier.calls.length > 0);
    await waitUntil('the failed check of a logged', () => c.lines.some((l) => l.secret === 'a' && l.code === 'AccessDeniedException'));
    await r.stop();
    assert.deepEqual(
      notifier.calls.map((n) => n.changed),
      [['b.txt']],
    );
    assert.equal(await readFile(join(c.outDir, 'a.txt'), 'utf8'), 'a1');
    assert.equal(await readFile(join(c.outDir, 'b.txt'), 'utf8'), 'b2');
    assert.equal(await readFile(join(c.outDir, 'c.txt'), 'utf8'), 'c=1');
    assert.equal(r.pipeline.values.get('a')?.versionId, 'v1');
    assert.equal(r.ready, true);
    assert.ok(c.lines.some((l) => l.file === 'c.txt' && l.msg.endsWith('keeping its previous content')));
  });

  it('first render: fails until the secret is fixed, then ready; each retry re-checks the held secrets instead of re-fetching them', async () => {
    const c = (core = await makeCore({ a: 'app/a', b: 'app/b', c: 'app/c' }, THREE));
    c.source.set('app/a', 'a1');
    c.source.set('app/b', 'b1');
    c.source.set('app/c', 'no key yet');
    const r = (runner = new Runner({ log: c.log, metrics: metrics(), pipeline: c.pipeline(), notifier: new FakeNotifier(), coalesceMs: 50 }));
    const done = r.firstRender();
    const retries = (): number => c.lines.filter((l) => l.msg.startsWith('first render not complete: 1 file(s) could not be rendered')).length;
    await waitUntil('the first failed attempt', () => retries() >= 1);
    r.checkAllNow(); // wakes the retry at once
    await waitUntil('a second failed attempt', () => retries() >= 2);
    assert.equal(r.ready, false);
    assert.equal(c.writer.generations, 0);
    assert.equal(c.lines.filter((l) => l.file === 'c.txt' && l.level === 'error').length, 1, 'the render error is logged once');

    c.source.set('app/c', '{"key":"fixed"}');
    r.checkAllNow();
    assert.equal(await done, true);
    assert.equal(r.ready, true);
    assert.equal(await readFile(join(c.outDir, 'c.txt'), 'utf8'), 'c=fixed');
    // a and b: fetched once (the first attempt), then only checked; c fetched again once it moved.
    for (const n of ['a', 'b']) {
      assert.equal(c.source.count(c.source.fetched, n), 1, `${n} fetched once`);
      assert.ok(c.source.count(c.source.described, n) >= 2, `${n} re-checked at every retry`);
    }
    assert.equal(c.source.count(c.source.fetched, 'c'), 2);
  });

  it('first render: a secret that cannot be read (even terminally) is retried until it can', async () => {
    const c = (core = await makeCore({ a: 'app/a', b: 'app/b', c: 'app/c' }, THREE));
    c.source.set('app/a', 'a1');
    c.source.set('app/c', '{"key":"1"}');
    const r = (runner = new Runner({ log: c.log, metrics: metrics(), pipeline: c.pipeline(), notifier: new FakeNotifier(), coalesceMs: 50 }));
    const done = r.firstRender();
    await waitUntil('a failed attempt', () => c.lines.some((l) => l.msg === 'first render not complete: 1 secret(s) not available yet; retrying'));
    c.source.set('app/b', 'b1'); // created
    r.checkAllNow();
    assert.equal(await done, true);
    assert.equal(await readFile(join(c.outDir, 'b.txt'), 'utf8'), 'b1');
  });
});

describe("the first-render loop with init's options (initFirstRender)", () => {
  let core: Core | undefined;
  afterEach(async () => {
    await core?.cleanup();
    core = undefined;
  });

  const setup = async (): Promise<Core> => {
    const c = (core = await makeCore({ a: 'app/a', b: 'app/b', c: 'app/c' }, THREE));
    c.source.set('app/a', 'a1');
    c.source.set('app/b', 'b1');
    c.source.set('app/c', '{"key":"1"}');
    return c;
  };
  let deadline: AbortSignal | undefined;
  const run = (c: Core, timeoutMs: number) => {
    deadline = AbortSignal.timeout(timeoutMs);
    return initFirstRender(c.pipeline(), { signal: deadline, timeoutMs, log: c.log });
  };
  const written = async (c: Core): Promise<string[]> => readdir(c.outDir).catch(() => []);

  it('a transient failure is retried until --timeout, fetching only what is missing; then it gives up with nothing written', async () => {
    const c = await setup();
    c.source.fail('app/b', 'ThrottlingException', true);
    const result = await run(c, 700);
    assert.equal(result.ok, false);
    assert.ok(!result.ok && result.failure?.kind === 'fetch' && [...result.failure.failures.keys()].join() === 'b');
    const warns = c.lines.filter((l) => l.level === 'warn' && l.secret === 'b');
    // One line for the one cause, however many retries within the 5 s hold (observe/repeats.ts).
    assert.deepEqual(
      warns.map((l) => l.attempt),
      [1],
    );
    assert.equal(c.source.count(c.source.fetched, 'a'), 1, 'a fetched once');
    assert.ok(c.source.count(c.source.fetched, 'b') >= 2, 'retried');
    assert.deepEqual(await written(c), []);
  });

  it('a transient failure that clears: written once every secret has a value', async () => {
    const c = await setup();
    c.source.fail('app/b', 'ThrottlingException', true);
    const result = run(c, 30_000);
    await waitUntil('a retry', () => c.lines.some((l) => l.level === 'warn' && l.secret === 'b'));
    c.source.heal('app/b');
    const r = await result;
    assert.ok(r.ok);
    assert.deepEqual(r.write?.changed, ['a.txt', 'b.txt', 'c.txt']);
    assert.equal(c.source.count(c.source.fetched, 'a'), 1);
  });

  it('a terminal failure ends it at once: one attempt, no retry, nothing written', async () => {
    const c = await setup();
    c.source.fail('app/b', 'ResourceNotFoundException', false);
    c.source.fail('app/c', 'ThrottlingException', true);
    const result = await run(c, 30_000);
    assert.ok(!result.ok && result.failure?.kind === 'fetch');
    assert.deepEqual([...result.failure.failures.keys()], ['b', 'c']);
    assert.equal(c.source.count(c.source.fetched, 'b'), 1);
    assert.equal(c.lines.filter((l) => l.level === 'warn').length, 0, 'no retry line');
    assert.equal(deadline?.aborted, false, 'ended before --timeout, not by it');
    assert.deepEqual(await written(c), []);
  });

  it('a render error ends it at once (init does not wait for the secret to be fixed)', async () => {
    const c = await setup();
    c.source.set('app/c', 'no key');
    const result = await run(c, 30_000);
    assert.ok(!result.ok && result.failure?.kind === 'render');
    assert.deepEqual(
      result.failure.errors.map((e) => e.file),
      ['c.txt'],
    );
    assert.equal(c.source.fetched.length, 3, 'one attempt');
    assert.equal(deadline?.aborted, false, 'ended before --timeout, not by it');
    assert.equal(c.writer.generations, 0);
  });
});
