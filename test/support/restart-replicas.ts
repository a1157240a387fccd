// N simulated replicas of one workload for the restart notify's splay test
// (test/e2e/restart.test.ts): each replica is one notifier of its own (the real
// one, agent/notify) with one restart target for its own app, app-01 .. app-NN,
// all told of the same rotation at the same moment, as the replicas of a
// Deployment see one rotation. Runs inside the pod's PID namespace (started with
// nsenter, so it is a container main process there, as the agent is).
//
//   node restart-replicas.ts <count> <splay ms> <grace ms> [--process NAME] [--twice]
//
// --process: every replica's target names that process instead of its own app.
// --twice: each replica is told twice in a row (a second write while the first
// restart waits for its splay).
// stdout: {"event":"notify","at":<Date.now()>} when every replica is told, then
// {"event":"done","at":...}; the notifiers' own log lines on stderr.
import { createNotifier } from '../../agent/notify/index.ts';
import { createLogger } from '../../agent/observe/log.ts';

const [count, splayMs, graceMs] = process.argv.slice(2, 5).map(Number) as [number, number, number];
const flags = process.argv.slice(5);
const wanted = flags.includes('--process') ? flags[flags.indexOf('--process') + 1] : undefined;
const times = flags.includes('--twice') ? 2 : 1;
const log = createLogger({ level: 'info' });
const name = (i: number): string => `app-${String(i + 1).padStart(2, '0')}`;
const replicas = Array.from({ length: count }, (_, i) =>
  createNotifier([{ kind: 'restart', name: `restart:${name(i)}`, process: wanted ?? name(i), signal: 'SIGTERM', graceMs, splayMs }], { log }),
);
process.stdout.write(`${JSON.stringify({ event: 'notify', at: Date.now() })}\n`);
// The notifier's splay timers are unref'd (in the agent, its heartbeat keeps the process alive): so is this.
const alive = setInterval(() => undefined, 1000);
await Promise.all(replicas.flatMap((r) => Array.from({ length: times }, () => r.notify(['app.env']))));
clearInterval(alive);
process.stdout.write(`${JSON.stringify({ event: 'done', at: Date.now() })}\n`);
