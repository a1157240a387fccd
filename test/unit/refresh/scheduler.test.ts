// The refresh scheduler on its own: the `check` function is a stand-in (it is
// the unit's input, not a mock of AWS — the e2e tests drive the real one).
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { SourceError } from '../../../agent/errors.ts';
import { createLogger } from '../../../agent/observe/log.ts';
import { DueHeap } from '../../../agent/refresh/heap.ts';
import { Scheduler, type CheckOutcome } from '../../../agent/refresh/scheduler.ts';
import type { SecretMetadata, SecretSpec } from '../../../agent/types.ts';

const log = createLogger({ level: 'silent' });
const meta = (over: Partial<SecretMetadata> = {}): SecretMetadata => ({ arn: 'arn', name: 'n', versionIdForStage: 'v1', rotationEnabled: false, deleted: false, ...over });
const transient = (name: string) => new SourceError({ secret: name, secretId: name, code: 'ThrottlingException', transient: true, message: 'slow down' });

describe('DueHeap', () => {
  it('pops entries in due order whatever the push order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1e6 }), { maxLength: 300 }), (dues) => {
        const h = new DueHeap<number>();
        dues.forEach((d, i) => h.push(d, i));
        const out: number[] = [];
        for (let e = h.pop(); e; e = h.pop()) out.push(e.due);
        assert.deepEqual(out, [...dues].sort((a, b) => a - b));
      }),
    );
  });
});

describe('Scheduler', () => {
  it('checks each secret about every interval and never a pinned versionId', async () => {
    const seen: string[] = [];
    const s = new Scheduler({
      log,
      intervalMs: 100,
      jitter: 0.1,
      rotationAware: false,
      check: (spec) => {
        seen.push(spec.name);
        return Promise.resolve({ metadata: meta(), changed: false });
      },
    });
    s.setSecrets([{ name: 'a', id: 'a' }, { name: 'pinned', id: 'p', versionId: 'x'.repeat(32) }]);
    await sleep(550);
    await s.stop();
    const a = seen.filter((n) => n === 'a').length;
    assert.ok(a >= 3 && a <= 6, `a checked ${a} times in 550 ms at 100 ms ± 10%`);
    assert.ok(!seen.includes('pinned'));
  });

  it('when checks fail transiently, it retries with backoff no slower than the interval and recovers', async () => {
    const at: number[] = [];
    let failUntil = Date.now() + 700;
    const errors: (SourceError | undefined)[] = [];
    const s = new Scheduler({
      log,
      intervalMs: 300,
      jitter: 0,
      rotationAware: false,
      check: (spec) => {
        at.push(Date.now());
        if (Date.now() < failUntil) return Promise.reject(transient(spec.name));
        return Promise.resolve({ metadata: meta(), changed: false });
      },
      onCheckResult: (_spec, e) => errors.push(e),
    });
    s.setSecrets([{ name: 'a', id: 'a' }]);
    await sleep(1600);
    failUntil = 0;
    await s.stop();
    const gaps = at.slice(1).map((t, i) => t - (at[i] ?? t));
    assert.ok(gaps.every((g) => g <= 300 + 60), `no wait longer than the interval: ${gaps.join(', ')}`);
    assert.ok(errors.some((e) => e === undefined), 'recovered after the fault cleared');
    assert.ok(errors.some((e) => e !== undefined), 'saw the failures');
  });

  it('waits on the monotonic clock: with the wall clock an hour behind or ahead, a NextRotationDate 300 ms ahead on the wall clock is checked about 1.3 s later', async () => {
    await Promise.all(
      [-3_600_000, 3_600_000].map(async (skew) => {
        const wall = () => Date.now() + skew;
        let checks = 0;
        const s = new Scheduler({
          log,
          intervalMs: 3_600_000,
          jitter: 0,
          rotationAware: true,
          wall,
          check: (): Promise<CheckOutcome> => {
            checks++;
            return Promise.resolve({ metadata: meta({ rotationEnabled: true, nextRotationDate: new Date(wall() + 300) }), changed: false });
          },
        });
        s.setSecrets([{ name: 'r', id: 'r' }]);
        for (let i = 0; i < 80 && checks === 0; i++) await sleep(50); // the first look: within 2 s
        await sleep(20);
        const due = (s.nextDue('r') ?? Infinity) - performance.now();
        await s.stop();
        assert.ok(checks >= 1, 'the first look happened');
        assert.ok(due > 0 && due < 2_000, `skew ${skew}: the probe after NextRotationDate is due in ${due} ms`);
      }),
    );
  });

  it('with rotationAware, it checks just after NextRotationDate even with a 1 h interval, and stops when the version changes', async () => {
    const next = new Date(Date.now() + 300);
    let rotated = false;
    const checks: number[] = [];
    const s = new Scheduler({
      log,
      intervalMs: 3_600_000,
      jitter: 0.2,
      rotationAware: true,
      check: (): Promise<CheckOutcome> => {
        checks.push(Date.now());
        const changed = rotated && checks.length > 1;
        return Promise.resolve({ metadata: meta({ rotationEnabled: true, nextRotationDate: next }), changed });
      },
    });
    const spec: SecretSpec = { name: 'r', id: 'r' };
    s.setSecrets([spec]);
    // The first metadata look comes within 2 s of start; then one just after the rotation date (+1 s),
    // or, if the first look came after the date, probes at +2 s, +4 s …: a check after the date comes
    // within ~4.5 s whatever the random first look.
    for (let i = 0; i < 160 && !checks.some((t) => t >= next.getTime() + 900); i++) await sleep(50);
    const afterRotation = checks.filter((t) => t >= next.getTime() + 900);
    assert.ok(afterRotation.length >= 1, `a check after NextRotationDate: ${checks.map((t) => t - next.getTime()).join(', ')}`);
    // The new version appears: the next probe (at most 2 s after the last) sees it, then back to the interval.
    rotated = true;
    const seen = checks.length;
    for (let i = 0; i < 100 && checks.length === seen; i++) await sleep(50);
    await sleep(50);
    const due = s.nextDue('r') ?? 0;
    await s.stop();
    assert.ok(checks.length > seen, 'probing continued until the change');
    assert.ok(due - performance.now() > 60_000, 'after the change, back to the regular interval');
  });

  it('stop() aborts the checks in flight and schedules nothing more', async () => {
    let calls = 0;
    let aborted = false;
    const s = new Scheduler({
      log,
      intervalMs: 10,
      jitter: 0,
      rotationAware: false,
      check: (_spec, signal) =>
        new Promise((_, reject) => {
          calls++;
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(transient('a'));
          });
        }),
    });
    s.setSecrets([{ name: 'a', id: 'a' }]);
    await sleep(50);
    await s.stop();
    const n = calls;
    await sleep(100);
    assert.ok(aborted);
    assert.equal(calls, n);
  });
});

describe('Scheduler: grouped checks', () => {
  const specs = (n: number): SecretSpec[] => Array.from({ length: n }, (_, i) => ({ name: `s${i}`, id: `s${i}` }));
  const terminal = (name: string) => new SourceError({ secret: name, secretId: name, code: 'AccessDeniedException', transient: false, message: 'denied' });

  it('checks due together go to checkMany as one group each round; each secret counted on its own', async () => {
    const groups: string[][] = [];
    const singles: string[] = [];
    const results = new Map<string, number>();
    const s = new Scheduler({
      log,
      intervalMs: 150,
      jitter: 0,
      rotationAware: false,
      check: (spec) => {
        singles.push(spec.name);
        return Promise.resolve({ metadata: meta(), changed: false });
      },
      checkMany: (group) => {
        groups.push(group.map((g) => g.name).sort());
        return Promise.resolve(new Map(group.map((g) => [g.name, { metadata: meta(), changed: false }])));
      },
      groupWindowMs: () => 40,
      onCheckResult: (spec, e) => {
        if (!e) results.set(spec.name, (results.get(spec.name) ?? 0) + 1);
      },
    });
    s.setSecrets(specs(5));
    for (let i = 0; i < 100 && groups.length < 3; i++) await sleep(20);
    await s.stop();
    assert.ok(groups.length >= 3, `three rounds: ${JSON.stringify(groups)}`);
    for (const g of groups) assert.deepEqual(g, ['s0', 's1', 's2', 's3', 's4']);
    assert.deepEqual(singles, [], 'no check on its own');
    for (const spec of specs(5)) assert.ok((results.get(spec.name) ?? 0) >= 3, `${spec.name} counted per round`);
  });

  it('a check due within the window of the earliest joins its group (early); one due later does not', async () => {
    const groups: string[][] = [];
    const s = new Scheduler({
      log,
      intervalMs: 10_000,
      jitter: 0,
      rotationAware: false,
      check: (spec) => {
        groups.push([spec.name]);
        return Promise.resolve({ metadata: meta(), changed: false });
      },
      checkMany: (group) => {
        groups.push(group.map((g) => g.name).sort());
        return Promise.resolve(new Map(group.map((g) => [g.name, { metadata: meta(), changed: false }])));
      },
      groupWindowMs: () => 300,
    });
    s.setSecrets([
      { name: 'a', id: 'a', refreshIntervalMs: 100 },
      { name: 'b', id: 'b', refreshIntervalMs: 100 },
      { name: 'early', id: 'early', refreshIntervalMs: 250 },
      { name: 'late', id: 'late', refreshIntervalMs: 5_000 },
    ]);
    for (let i = 0; i < 50 && groups.length < 1; i++) await sleep(20);
    await sleep(50);
    const lateDue = s.nextDue('late') ?? 0;
    await s.stop();
    assert.deepEqual(groups[0], ['a', 'b', 'early']);
    assert.ok(!groups.flat().includes('late'), 'late is not pulled in');
    assert.ok(lateDue - performance.now() > 4_000, 'late keeps its own due time');
  });

  it('a member that failed transiently is retried on its own with check(); the others are not re-checked; a terminal one is logged once', async () => {
    const singles: string[] = [];
    const groups: string[][] = [];
    let healed = false;
    const errors: string[] = [];
    const lines: string[] = [];
    const s = new Scheduler({
      log: { ...log, error: (_f: object, msg: string) => lines.push(msg), warn: () => undefined, info: () => undefined } as unknown as typeof log,
      intervalMs: 60_000,
      jitter: 0,
      rotationAware: false,
      check: (spec) => {
        singles.push(spec.name);
        if (spec.name === 'bad' && !healed) return Promise.reject(transient(spec.name));
        return Promise.resolve({ metadata: meta(), changed: false });
      },
      checkMany: (group) =>
        Promise.resolve(
          new Map<string, CheckOutcome | SourceError>(
            group.map((g) => {
              groups.push([g.name]);
              if (g.name === 'bad') return [g.name, transient(g.name)];
              if (g.name === 'denied') return [g.name, terminal(g.name)];
              return [g.name, { metadata: meta(), changed: false }];
            }),
          ),
        ),
      groupWindowMs: () => 50,
      onCheckResult: (spec, e) => {
        if (e) errors.push(spec.name);
      },
    });
    s.setSecrets([{ name: 'ok1', id: 'ok1' }, { name: 'bad', id: 'bad' }, { name: 'ok2', id: 'ok2' }, { name: 'denied', id: 'denied' }]);
    s.checkAllNow();
    // The first retry waits about 1 s (min(1000, interval), randomized): heal after the first failed retry.
    for (let i = 0; i < 200 && !singles.includes('bad'); i++) await sleep(20);
    healed = true;
    for (let i = 0; i < 300 && singles.filter((n) => n === 'bad').length < 2; i++) await sleep(20);
    await s.stop();
    assert.ok(singles.every((n) => n === 'bad'), `only the failed member retried alone: ${singles.join(',')}`);
    assert.ok(singles.length >= 2, 'retried until it recovered');
    assert.ok(errors.filter((n) => n === 'bad').length >= 2, 'each failed attempt of bad counted');
    assert.equal(errors.filter((n) => n === 'denied').length, 1, 'terminal: one attempt, counted once');
    assert.ok(!errors.includes('ok1') && !errors.includes('ok2'));
    assert.equal(lines.filter((l) => l.includes('denied')).length, 1, 'the terminal error logged once');
  });

  it('stop() while a group check is in flight or queued counts nothing as an error', async () => {
    const errors: string[] = [];
    let started = 0;
    const s = new Scheduler({
      log,
      intervalMs: 10_000,
      jitter: 0,
      rotationAware: false,
      concurrency: 1,
      check: () => new Promise<CheckOutcome>(() => undefined),
      checkMany: (_group, signal) => {
        started++;
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
      },
      groupWindowMs: () => 5,
      onCheckResult: (spec, e) => {
        if (e) errors.push(spec.name);
      },
    });
    // Two groups: the first holds the only slot, the second waits in the queue.
    s.setSecrets([
      { name: 'a', id: 'a', refreshIntervalMs: 10 },
      { name: 'b', id: 'b', refreshIntervalMs: 10 },
      { name: 'c', id: 'c', refreshIntervalMs: 60 },
      { name: 'd', id: 'd', refreshIntervalMs: 60 },
    ]);
    await sleep(150);
    await s.stop();
    assert.equal(started, 1, 'the second group was queued');
    assert.deepEqual(errors, []);
  });
});

describe('Scheduler: rounds (batching secrets at the default jitter), on a fake clock', () => {
  const INTERVAL = 300_000;
  const WINDOW = 500;
  const specs = (n: number, prefix = 's'): SecretSpec[] => Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, id: `${prefix}${i}` }));
  const ok = (): CheckOutcome => ({ metadata: meta(), changed: false });

  /** Advance the fake clock in steps, letting the checks' promise chains settle after each. */
  async function advance(ms: number, step = 1000): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      mock.timers.tick(step);
      for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
    }
  }

  /** A scheduler recording every group (with its time) and every single check; `answer` decides each secret's result. */
  function recorder(options: { batches?: boolean; rotationAware?: boolean; answer?: (name: string, alone: boolean) => CheckOutcome | SourceError; lines?: string[] }) {
    const groups: { at: number; names: string[] }[] = [];
    const singles: { at: number; name: string }[] = [];
    const answer = options.answer ?? (() => ok());
    const settle = (r: CheckOutcome | SourceError): Promise<CheckOutcome> => (r instanceof Error ? Promise.reject(r) : Promise.resolve(r));
    const lines = options.lines ?? [];
    const s = new Scheduler({
      log: { ...log, error: (_f: object, msg: string) => lines.push(msg), warn: () => undefined, info: () => undefined } as unknown as typeof log,
      intervalMs: INTERVAL,
      jitter: 0.2,
      rotationAware: options.rotationAware ?? false,
      // Under faked timers the fake Date is both clocks (mock.timers does not fake performance.now).
      now: () => Date.now(),
      check: (spec) => {
        singles.push({ at: Date.now(), name: spec.name });
        return settle(answer(spec.name, true));
      },
      checkMany: (group) => {
        groups.push({ at: Date.now(), names: group.map((g) => g.name).sort() });
        return Promise.resolve(new Map(group.map((g) => [g.name, answer(g.name, false)])));
      },
      groupWindowMs: () => WINDOW,
      ...(options.batches === false ? {} : { batches: () => true }),
    });
    return { s, groups, singles, lines };
  }

  /** Run `body` with Date and setTimeout faked; always restores them. */
  async function faked(body: () => Promise<void>): Promise<void> {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_700_000_000_000 });
    try {
      await body();
    } finally {
      mock.timers.reset();
    }
  }

  it('10 secrets with one interval at jitter 0.2 are checked in one group per round over 100 rounds; the rounds stay jittered', () =>
    faked(async () => {
      const { s, groups, singles } = recorder({});
      s.setSecrets(specs(10));
      await advance(100 * INTERVAL * 1.2, 2000);
      await s.stop();
      assert.ok(groups.length >= 100, `at least 100 rounds in 100 × 1.2 intervals: ${groups.length}`);
      const all = specs(10).map((x) => x.name).sort();
      for (const g of groups) assert.deepEqual(g.names, all, `every round is the whole pod: ${JSON.stringify(g.names)}`);
      assert.deepEqual(singles, [], 'no check on its own');
      const gaps = groups.slice(1).map((g, i) => g.at - (groups[i]?.at ?? 0));
      assert.ok(gaps.every((g) => g >= INTERVAL * 0.8 - 2000 && g <= INTERVAL * 1.2 + 2000), `each round interval ± 20 %: ${gaps.join(',')}`);
      assert.ok(new Set(gaps).size > 20, 'the jitter is still drawn (per round)');
    }));

  it('without batches (a backend that does not batch), the per-secret jitter stays: the same pod drifts apart', () =>
    faked(async () => {
      const { s, groups, singles } = recorder({ batches: false });
      s.setSecrets(specs(10));
      await advance(100 * INTERVAL * 1.2, 2000);
      await s.stop();
      const requests = groups.length + singles.length;
      assert.ok(requests > 500, `mostly one request per check (${groups.length} groups, ${singles.length} single)`);
    }));

  it('a member failing transiently is retried on its own with backoff, then rejoins the round; the others never leave it', () =>
    faked(async () => {
      let failing = true;
      const { s, groups, singles } = recorder({
        answer: (name) => (name === 's3' && failing ? transient(name) : ok()),
      });
      s.setSecrets(specs(10));
      await advance(INTERVAL * 1.2 + 5000);
      assert.equal(groups.length, 1);
      // Retries of s3 alone, with backoff (about 1 s, 2 s, 4 s …), never the others.
      await advance(20_000);
      const retries = singles.filter((c) => c.name === 's3');
      assert.ok(retries.length >= 3, `retried on its own: ${retries.length}`);
      assert.ok(singles.every((c) => c.name === 's3'));
      const gaps = retries.slice(1).map((c, i) => c.at - (retries[i]?.at ?? 0));
      assert.ok((gaps.at(-1) ?? 0) > (gaps[0] ?? 0), `backoff grows: ${gaps.join(',')}`);
      failing = false;
      await advance(INTERVAL * 6);
      await s.stop();
      const all = specs(10).map((x) => x.name).sort();
      const others = all.filter((n) => n !== 's3');
      for (const g of groups) for (const n of others) assert.ok(g.names.includes(n), `${n} stays in every round`);
      // Back within two rounds: the last rounds are the whole pod again.
      assert.deepEqual(groups.at(-1)?.names, all);
      assert.deepEqual(groups.at(-2)?.names, all);
      const s3Alone = singles.filter((c) => c.name === 's3').length;
      assert.equal(s3Alone, retries.length + 1, 'after its recovering retry, s3 is only checked in rounds');
    }));

  it('a terminal error of a member is logged once, and the member stays in the round (checked at the normal interval)', () =>
    faked(async () => {
      const lines: string[] = [];
      const denied = new SourceError({ secret: 's5', secretId: 's5', code: 'AccessDeniedException', transient: false, message: 'denied s5' });
      const { s, groups, singles } = recorder({ lines, answer: (name) => (name === 's5' ? denied : ok()) });
      s.setSecrets(specs(10));
      await advance(INTERVAL * 10);
      await s.stop();
      assert.ok(groups.length >= 8);
      for (const g of groups) assert.equal(g.names.length, 10);
      assert.deepEqual(singles, []);
      assert.equal(lines.filter((l) => l.includes('denied s5')).length, 1, `logged once: ${JSON.stringify(lines)}`);
    }));

  it('rotationAware: the first look is one group; rotation probes stay per secret; after the rotation the secret rejoins the round', () =>
    faked(async () => {
      const rotationAt = Date.now() + 100_000;
      let rotated = false;
      const { s, groups, singles } = recorder({
        rotationAware: true,
        answer: (name) => {
          if (name !== 'r') return ok();
          if (Date.now() >= rotationAt + 3000) rotated = true;
          return { metadata: meta({ rotationEnabled: true, nextRotationDate: new Date(rotationAt) }), changed: rotated && Date.now() >= rotationAt + 3000 };
        },
      });
      s.setSecrets([...specs(9), { name: 'r', id: 'r' }]);
      await advance(3000, 100);
      assert.equal(groups.length, 1, 'the first look of all ten is one group');
      assert.equal(groups[0]?.names.length, 10);
      await advance(120_000, 100);
      const probes = singles.filter((c) => c.name === 'r');
      assert.ok(probes.length >= 2, `probes after NextRotationDate, on their own: ${probes.map((c) => c.at - rotationAt).join(',')}`);
      assert.ok((probes[0]?.at ?? 0) >= rotationAt && (probes[0]?.at ?? 0) <= rotationAt + 1500, 'the first probe just after the date');
      assert.ok(rotated);
      assert.ok(singles.every((c) => c.name === 'r'));
      await advance(INTERVAL * 6);
      await s.stop();
      const all = [...specs(9).map((x) => x.name), 'r'].sort();
      assert.deepEqual(groups.at(-1)?.names, all, 'r is back in the round');
      assert.deepEqual(groups.at(-2)?.names, all);
    }));

  it('a secret added by a reload joins a round no earlier than its own interval allows', () =>
    faked(async () => {
      const { s, groups, singles } = recorder({});
      s.setSecrets(specs(10));
      await advance(INTERVAL * 1.5);
      const added = Date.now();
      s.setSecrets([...specs(10), { name: 'new', id: 'new' }]);
      const due = s.nextDue('new') ?? 0;
      assert.ok(due - added >= INTERVAL * 0.8 - WINDOW, `not earlier than interval × (1 − jitter): ${due - added}`);
      assert.ok(due - added <= 2 * INTERVAL * 1.2, 'and within two intervals');
      await advance(INTERVAL * 5);
      await s.stop();
      assert.deepEqual(singles, []);
      const firstWithNew = groups.find((g) => g.names.includes('new'));
      const late = (firstWithNew?.at ?? 0) - due;
      assert.ok(late >= 0 && late < 1000, `its first check is a round of the others (${late} ms after its due time, the clock's step)`);
      for (const g of groups.filter((g) => g.at >= due)) assert.equal(g.names.length, 11);
    }));
});
