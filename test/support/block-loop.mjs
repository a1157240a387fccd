// A preload (node --import) for tests: each SIGWINCH blocks the event loop of
// the process for BLOCK_LOOP_MS (default 1500) with a busy wait, as a runaway
// computation would. SIGWINCH is otherwise ignored by Node and by the agent.
import { performance } from 'node:perf_hooks';

const ms = Number(process.env.BLOCK_LOOP_MS ?? 1500);
process.on('SIGWINCH', () => {
  const end = performance.now() + ms;
  while (performance.now() < end);
});
