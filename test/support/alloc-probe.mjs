// Test-only instrumentation (the bench's BENCH_PROFILE=alloc:<dir>, see
// test/bench/fixtures.ts profileFlags): samples every allocation of the agent,
// the ones the garbage collector has since freed included (what costs GC time),
// from 5 s after start (past the first render; ALLOC_PROBE_AFTER_MS to
// change it) to exit, and writes
// <ALLOC_PROBE_DIR>/<pid>.heapprofile for test/bench/profile-summary.ts.
//
// An in-process inspector session, loaded with `node --import`: the agent
// refuses an inspector reachable from outside (`--inspect*`), and this one is
// not; nothing of it ships.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { setTimeout } from 'node:timers';

const dir = process.env.ALLOC_PROBE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  const start = () =>
    session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  const after = Number(process.env.ALLOC_PROBE_AFTER_MS ?? 5000);
  if (after > 0) setTimeout(start, after).unref();
  else start();
  process.on('exit', () => {
    session.post('HeapProfiler.stopSampling', (err, result) => {
      if (err) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${process.pid}.heapprofile`), JSON.stringify(result.profile));
    });
  });
}
