// Test-only instrumentation, loaded into the agent by the soak test with
// `node --expose-gc --import test/support/heap-probe.mjs`: once a second it forces
// a full garbage collection and writes the V8 heap in use right after it to
// $HEAP_PROBE_FILE (atomically: temp file + rename).
//
// Why a preload and not the inspector: the agent refuses to start with an
// inspector (a debugging surface every container of the pod could reach), and
// rightly so; a heap bound needs a forced GC, which only code inside the
// process can do. This is that code, and nothing of it ships.
import { renameSync, writeFileSync } from 'node:fs';
import { setInterval } from 'node:timers';
import { getHeapStatistics } from 'node:v8';

const out = process.env.HEAP_PROBE_FILE;
const gc = globalThis.gc; // present with --expose-gc
if (out && typeof gc === 'function') {
  let n = 0;
  const probe = () => {
    gc();
    const tmp = `${out}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ n: ++n, usedSize: getHeapStatistics().used_heap_size }));
    renameSync(tmp, out);
  };
  setInterval(probe, 1000).unref();
}
