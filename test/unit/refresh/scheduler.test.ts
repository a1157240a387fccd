// The refresh scheduler on its own: the `check` function is a stand-in (it is
// the unit's input, not a mock of AWS — the e2e tests drive the real one).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
    assert.ok(due - Date.now() > 60_000, 'after the change, back to the regular interval');
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
