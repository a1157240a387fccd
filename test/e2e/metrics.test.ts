// Metrics end to end: the real `run` against moto behind the recording proxy;
// scrape /metrics over HTTP and watch the numbers move as they should.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { serverUrl, startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { promtool, runPromtool } from '../support/promtool.ts';
import { startProxy, unavailable, type Proxy } from '../support/proxy.ts';
import { stopAgent } from '../support/procs.ts';

const CANARY = 'CANARY-metrics-9b7e11';

/** Parse the Prometheus text format into "name{labels}" -> value (labels as written). */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function sum(m: Map<string, number>, name: string, ...labels: string[]): number {
  let total = 0;
  for (const [k, v] of m) {
    if ((k === name || k.startsWith(name + '{')) && labels.every((l) => k.includes(l))) total += v;
  }
  return total;
}

describe('metrics end to end', () => {
  let moto: Moto;
  let proxy: Proxy;
  let dir: string;
  let agent: RunningAgent;
  let base: string;
  const scrapes: string[] = [];
  const scrape = async (): Promise<Map<string, number>> => {
    const text = await (await fetch(`${base}/metrics`)).text();
    scrapes.push(text);
    return parse(text);
  };

  before(async () => {
    moto = await startMoto();
    proxy = await startProxy(moto.url);
    dir = await mkdtemp(join(tmpdir(), 'sa-e2e-metrics-'));
    await writeFile(join(dir, 'token'), 'token');
    await moto.sm('CreateSecret', { Name: 'm/db', SecretString: JSON.stringify({ password: `p1-${CANARY}` }) });
    await moto.sm('CreateSecret', { Name: 'm/other', SecretString: `o-${CANARY}` });
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `source: { region: us-east-1 }
outputDir: ${join(dir, 'out')}
refresh: { interval: 400ms, jitter: 0.1 }
secrets:
  db: { id: m/db }
  other: { id: m/other }
files:
  - path: db.txt
    template: "{{ secrets.db.password }}"
  - path: other.txt
    secret: other
notify:
  - exec: ["/bin/true"]
server: { listen: "127.0.0.1:0" }
`,
    );
    agent = startAgent(['run', '--config', config, '--log-level', 'debug'], { env: agentEnv({ url: proxy.url } as Moto, join(dir, 'token')) });
    await agent.waitFor(/first render complete/);
    base = await serverUrl(agent);
  });

  after(async () => {
    await stopAgent(agent);
    await proxy?.close();
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('when ready, it reports ready, build info and the first load', async () => {
    const m = await scrape();
    assert.equal(m.get('secrets_agent_ready'), 1);
    assert.equal(sum(m, 'secrets_agent_build_info'), 1);
    assert.ok(sum(m, 'secrets_agent_aws_requests_total', 'operation="BatchGetSecretValue"', 'result="success"') >= 1);
    assert.ok(sum(m, 'secrets_agent_aws_requests_total', 'operation="AssumeRoleWithWebIdentity"', 'result="success"') >= 1, 'STS calls are observed');
    assert.ok(sum(m, 'secrets_agent_credentials_expiration_timestamp_seconds') > Date.now() / 1000);
    assert.ok(sum(m, 'secrets_agent_secret_version_created_timestamp_seconds', 'secret="db"') > 0);
  });

  it('when quiet, only DescribeSecret is added to aws_requests_total', async () => {
    await sleep(600);
    const before = await scrape();
    await sleep(2000);
    const after = await scrape();
    const delta = (op: string) =>
      sum(after, 'secrets_agent_aws_requests_total', `operation="${op}"`) - sum(before, 'secrets_agent_aws_requests_total', `operation="${op}"`);
    assert.ok(delta('DescribeSecret') >= 4, `DescribeSecret grew by ${delta('DescribeSecret')}`);
    assert.equal(delta('GetSecretValue'), 0);
    assert.equal(delta('BatchGetSecretValue'), 0);
    assert.ok(sum(after, 'secrets_agent_secret_checks_total', 'secret="db"', 'result="success"') > sum(before, 'secrets_agent_secret_checks_total', 'secret="db"', 'result="success"'));
  });

  it('when a secret rotates, version changes, generation time, fetches and notify move', async () => {
    const before = await scrape();
    await moto.sm('PutSecretValue', { SecretId: 'm/db', SecretString: JSON.stringify({ password: `p2-${CANARY}` }) });
    let after = before;
    for (let i = 0; i < 40 && sum(after, 'secrets_agent_notify_total', 'result="success"') === sum(before, 'secrets_agent_notify_total', 'result="success"'); i++) {
      await sleep(100);
      after = await scrape();
    }
    assert.equal(sum(after, 'secrets_agent_secret_version_changes_total', 'secret="db"') - sum(before, 'secrets_agent_secret_version_changes_total', 'secret="db"'), 1);
    assert.equal(sum(after, 'secrets_agent_secret_version_changes_total', 'secret="other"'), 0);
    assert.ok(sum(after, 'secrets_agent_files_generation_timestamp_seconds') > sum(before, 'secrets_agent_files_generation_timestamp_seconds'));
    assert.equal(sum(after, 'secrets_agent_aws_requests_total', 'operation="GetSecretValue"') - sum(before, 'secrets_agent_aws_requests_total', 'operation="GetSecretValue"'), 1, 'one GetSecretValue per rotation');
    assert.equal(sum(after, 'secrets_agent_notify_total', 'result="success"') - sum(before, 'secrets_agent_notify_total', 'result="success"'), 1);
    assert.ok(sum(after, 'secrets_agent_file_renders_total', 'file="db.txt"', 'result="success"') > sum(before, 'secrets_agent_file_renders_total', 'file="db.txt"', 'result="success"'));
  });

  it('when a storm of 503s hits, the error results grow and ready stays 1', async () => {
    const before = await scrape();
    proxy.fault = (op) => (op === 'DescribeSecret' ? unavailable : undefined);
    try {
      await sleep(3000);
    } finally {
      proxy.fault = undefined;
    }
    const after = await scrape();
    assert.ok(sum(after, 'secrets_agent_aws_requests_total', 'operation="DescribeSecret"', 'result="server_error"') > sum(before, 'secrets_agent_aws_requests_total', 'operation="DescribeSecret"', 'result="server_error"'));
    assert.ok(sum(after, 'secrets_agent_secret_checks_total', 'result="error"') > sum(before, 'secrets_agent_secret_checks_total', 'result="error"'));
    assert.equal(after.get('secrets_agent_ready'), 1);
  });

  it('promtool check metrics finds no problem in a real scrape', async (t) => {
    const text = await (await fetch(`${base}/metrics`)).text();
    scrapes.push(text);
    const have = promtool();
    if (!have.ok) {
      t.skip(have.reason);
      return;
    }
    const r = runPromtool(['check', 'metrics'], { input: text });
    assert.equal(r.status, 0, r.output);
  });

  it('never exposes the canary in any scrape, endpoint or log line', async () => {
    for (const path of ['/healthz', '/readyz', '/nope']) scrapes.push(await (await fetch(base + path)).text());
    assert.ok(scrapes.length >= 6);
    for (const s of scrapes) assert.ok(!s.includes(CANARY), 'canary in an endpoint answer');
    const { stdout, stderr } = agent.output();
    assert.ok(!stdout.includes(CANARY) && !stderr.includes(CANARY), 'canary in the debug log');
  });
});
