// Batched checks at the DEFAULT jitter (0.2), end to end: the real CLI (`run`)
// against moto behind the recording proxy (test/support/proxy.ts), which sees
// every request. The scheduler checks the secrets of a batching backend in
// rounds (one jittered draw per round, refresh/scheduler.ts), so a pod's checks
// keep sharing requests instead of drifting apart: SSM parameters by
// GetParameters (10 names a call), Secrets Manager with refresh.batchChecks by
// ListSecrets (10 names a filter). Requests are grouped into rounds by time: a
// round is a burst of requests, rounds are interval ± 20 % apart.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { closeWorkspace, openWorkspace } from '../support/workspace.ts';
import { startProxy, type Proxy, type Recorded } from '../support/proxy.ts';
import { waitUntil } from '../support/wait.ts';

const CANARY = 'CANARY-rounds-5d81a2';
const INTERVAL_MS = 1500;
/** Requests closer than this belong to one round (rounds are at least 0.8 × 1.5 s = 1.2 s apart). */
const ROUND_GAP_MS = 400;

/** The requests after `since` (with `keep`), in bursts; the first and last burst are dropped (they may be cut by the window). */
function rounds(requests: readonly Recorded[], since: number, keep: (r: Recorded) => boolean): Recorded[][] {
  const out: Recorded[][] = [];
  for (const r of requests.filter((x) => x.at >= since && keep(x)).sort((a, b) => a.at - b.at)) {
    const last = out.at(-1);
    if (last && r.at - (last.at(-1)?.at ?? 0) < ROUND_GAP_MS) last.push(r);
    else out.push([r]);
  }
  return out.slice(1, -1);
}

const isSsm = (r: Recorded): boolean => String(r.headers['x-amz-target'] ?? '').startsWith('AmazonSSM.');
const ssmBody = (r: Recorded): { WithDecryption?: boolean; Names?: string[] } => JSON.parse(r.body || '{}') as { WithDecryption?: boolean; Names?: string[] };

describe('checks in rounds at the default jitter (0.2)', () => {
  let moto: Moto;
  let root: string;
  const agents: RunningAgent[] = [];
  const proxies: Proxy[] = [];

  before(async () => {
    ({ moto, root } = await openWorkspace('sa-e2e-rounds-'));
  });

  after(() => closeWorkspace({ moto, root }, agents, proxies));

  async function start(name: string, secrets: string[], refresh: string): Promise<{ proxy: Proxy; agent: RunningAgent }> {
    const dir = join(root, name);
    await mkdir(dir, { recursive: true });
    const proxy = await startProxy(moto.url);
    proxies.push(proxy);
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `source: { region: us-east-1 }
outputDir: ${join(dir, 'out')}
refresh: { ${refresh} }
secrets:
${secrets.join('\n')}
files:
  - { path: all, template: "{{ raw | size }}" }
server: { listen: "" }
`,
    );
    const agent = startAgent(['run', '--config', config], { env: agentEnv({ url: proxy.url } as Moto, join(root, 'token')) });
    agents.push(agent);
    await agent.waitFor(/first render complete/);
    return { proxy, agent };
  }

  async function stop(agent: RunningAgent): Promise<void> {
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    const { stdout, stderr } = agent.output();
    assert.ok(!stdout.includes(CANARY) && !stderr.includes(CANARY), 'canary leaked into the agent output');
  }

  it('run with 12 SSM parameters, quiet: each check round costs at most ceil(12/10) + 1 SSM calls, checks all 12, and never decrypts', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `/rounds/p${i}`);
    for (const [i, n] of names.entries()) await moto.ssm('PutParameter', { Name: n, Value: `v1-${i}-${CANARY}`, Type: i % 2 ? 'SecureString' : 'String' });
    const { proxy, agent } = await start(
      'ssm',
      names.map((n, i) => `  p${i}: { parameter: ${n} }`),
      `interval: ${INTERVAL_MS}ms`, // jitter and rotationAware at their defaults
    );
    const since = Date.now();
    await waitUntil('eight check rounds', () => rounds(proxy.requests, since, isSsm).length >= 8, 60_000);
    const seen = rounds(proxy.requests, since, isSsm);
    process.stdout.write(`# 12 parameters, jitter 0.2: SSM calls per round ${seen.map((r) => r.length).join(',')}\n`);
    for (const round of seen) {
      const what = JSON.stringify(round.map((r) => ({ op: r.headers['x-amz-target'], ...ssmBody(r) })));
      assert.ok(round.length <= Math.ceil(12 / 10) + 1, `at most ceil(12/10) + 1 calls in a round: ${what}`);
      assert.ok(round.every((r) => ssmBody(r).WithDecryption !== true), `no decrypting call: ${what}`);
      assert.deepEqual(round.flatMap((r) => ssmBody(r).Names ?? []).sort(), [...names].sort(), `all 12 in the round: ${what}`);
    }
    await stop(agent);
  });

  it('batchChecks with 10 Secrets Manager secrets at the default jitter: one ListSecrets per round for all ten, no DescribeSecret', async () => {
    const secrets: string[] = [];
    for (let i = 0; i < 10; i++) {
      await moto.sm('CreateSecret', { Name: `rounds/s${i}`, SecretString: `v1-${i}-${CANARY}` });
      secrets.push(`  s${i}: { id: rounds/s${i} }`);
    }
    const { proxy, agent } = await start('sm', secrets, `interval: ${INTERVAL_MS}ms, batchChecks: true`);
    const since = Date.now();
    const checks = (r: Recorded): boolean => r.operation === 'ListSecrets' || r.operation === 'DescribeSecret';
    await waitUntil('eight check rounds', () => rounds(proxy.requests, since, checks).length >= 8, 60_000);
    const seen = rounds(proxy.requests, since, checks);
    process.stdout.write(`# 10 secrets, batchChecks, jitter 0.2: calls per round ${seen.map((r) => r.map((x) => x.operation).join('+')).join(', ')}\n`);
    assert.equal(proxy.count('DescribeSecret'), 0, 'no DescribeSecret at all');
    for (const round of seen) {
      assert.deepEqual(round.map((r) => r.operation), ['ListSecrets'], 'one ListSecrets per round');
      const filter = (JSON.parse(round[0]!.body) as { Filters?: { Key: string; Values: string[] }[] }).Filters?.find((f) => f.Key === 'name')?.Values ?? [];
      assert.equal(filter.length, 10, `all ten in it: ${round[0]!.body}`);
    }
    await stop(agent);
  });
});
