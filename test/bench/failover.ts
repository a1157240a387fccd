// Time to the failover region: `init` (the real CLI, from source) with
// source.failoverRegion, against moto behind the fault proxy, while every
// request signed for the primary region hangs, is reset, or gets 503 (and, for
// reference, with the primary up). Prints the median, min and max wall time of
// `init` from spawn to exit over RUNS runs per fault, and how many requests
// reached the primary. Numbers from one machine, never assertions
// (docs/reliability.md, "Failover: time to the failover region").
//
//   node test/bench/failover.ts            5 runs per fault
//   RUNS=3 node test/bench/failover.ts
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { MAIN, REPO } from '../support/cli.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { unavailable, type Fault, type Recorded } from '../support/proxy.ts';
import { closeWorkspace, openWorkspace, writeCase } from '../support/workspace.ts';
import { median, round, table } from './lib.ts';

const PRIMARY = 'us-east-1';
const FAILOVER = 'us-west-2';
const RUNS = Number(process.env['RUNS'] ?? 5);

const regionOf = (r: Recorded): string | undefined => {
  const auth = r.headers.authorization;
  return typeof auth === 'string' ? /Credential=[^/]+\/\d{8}\/([a-z0-9-]+)\//.exec(auth)?.[1] : undefined;
};

/** Wall time of one `init` in ms, and its exit code. */
function timeInit(config: string, env: NodeJS.ProcessEnv): Promise<{ ms: number; code: number | null }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [MAIN, 'init', '--config', config, '--timeout', '2m'], { cwd: REPO, env, stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ ms: performance.now() - t0, code }));
  });
}

const w = await openWorkspace('sa-bench-failover-', { proxy: true });
try {
  const { moto, proxy, root } = w;
  await moto.call('secretsmanager', 'CreateSecret', { Name: 'bench/db', SecretString: 'value', AddReplicaRegions: [{ Region: FAILOVER }] }, PRIMARY);
  const { config } = await writeCase(
    root,
    'case',
    (out) => `source: { region: ${PRIMARY}, failoverRegion: ${FAILOVER} }
outputDir: ${out}
secrets:
  db: { id: bench/db }
files:
  - { path: db, secret: db }
`,
  );
  const env = agentEnv({ url: proxy.url } as Moto, join(root, 'token'));
  const faults: [string, Fault | undefined][] = [
    ['primary up (no failover)', undefined],
    ['primary answers 503', unavailable],
    ['primary resets the connection', { kind: 'reset' }],
    ['primary hangs (accepts, never answers)', { kind: 'hang' }],
  ];
  const rows: (string | number)[][] = [];
  for (const [what, fault] of faults) {
    proxy.fault = (_op, r) => (fault && regionOf(r) === PRIMARY ? fault : undefined);
    const times: number[] = [];
    let primaryRequests = 0;
    let failed = 0;
    for (let i = 0; i < RUNS; i++) {
      const since = proxy.requests.length;
      const { ms, code } = await timeInit(config, env);
      if (code !== 0) failed++;
      times.push(ms);
      primaryRequests += proxy.requests.slice(since).filter((q) => regionOf(q) === PRIMARY).length;
    }
    rows.push([what, round(median(times)), round(Math.min(...times)), round(Math.max(...times)), round(primaryRequests / RUNS, 1), failed]);
  }
  proxy.fault = undefined;
  console.log(`init with source.failoverRegion, ${RUNS} runs each (wall time from spawn to exit, ms; node ${process.version})\n`);
  console.log(table(['primary region', 'median ms', 'min ms', 'max ms', 'requests to the primary / run', 'failed runs'], rows));
} finally {
  await closeWorkspace(w);
}
