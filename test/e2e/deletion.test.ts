// A secret scheduled for deletion (DeleteSecret with a recovery window: moto and
// AWS then report DescribeSecret DeletedDate, and GetSecretValue fails with
// InvalidRequestException) is reported once per deletion date, exposed as
// secrets_agent_secret_deletion_scheduled, and its last value keeps serving;
// RestoreSecret clears it. The real CLI against moto.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serverUrl, startAgent, type RunningAgent } from '../support/cli.ts';
import { stopAgent } from '../support/procs.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { readOr, waitUntil } from '../support/wait.ts';

function sample(scrape: string, series: string): number | undefined {
  for (const line of scrape.split('\n')) if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  return undefined;
}

describe('run: a secret scheduled for deletion', () => {
  let moto: Moto;
  let dir: string;
  let agent: RunningAgent | undefined;

  before(async () => {
    moto = await startMoto();
    dir = await mkdtemp(join(tmpdir(), 'sa-deletion-'));
    await writeFile(join(dir, 'token'), 'projected-token');
  });

  after(async () => {
    await stopAgent(agent);
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is warned about once, exposed as a metric, keeps its last value, and clears when restored', async () => {
    await moto.sm('CreateSecret', { Name: 'del/db', SecretString: 'db-value' });
    await moto.sm('CreateSecret', { Name: 'del/api', SecretString: 'api-value' });
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { region: us-east-1 }
outputDir: ${join(dir, 'out')}
refresh: { interval: 300ms }
secrets:
  db: { id: del/db }
  api: { id: del/api }
files:
  - path: db
    secret: db
  - path: api
    secret: api
server: { listen: "127.0.0.1:0" }
`,
    );
    agent = startAgent(['run', '--config', join(dir, 'config.yaml')], { env: agentEnv(moto, join(dir, 'token')) });
    const base = await serverUrl(agent);
    await agent.waitFor(/first render complete/);
    const scrape = async () => (await fetch(`${base}/metrics`)).text();
    const gauge = 'secrets_agent_secret_deletion_scheduled{secret="db"}';
    assert.equal(sample(await scrape(), gauge), 0);

    await moto.sm('DeleteSecret', { SecretId: 'del/db', RecoveryWindowInDays: 7 });
    await agent.waitFor(/secret scheduled for deletion/);
    assert.equal(sample(await scrape(), gauge), 1);
    assert.equal(sample(await scrape(), 'secrets_agent_secret_deletion_scheduled{secret="api"}'), 0);
    // Several more checks of the deleted secret: one warning in all, the value stays.
    const checks = () => scrape().then((s) => sample(s, 'secrets_agent_secret_checks_total{secret="db",result="success"}') ?? 0);
    const after = await checks();
    await waitUntil('5 more checks', async () => (await checks()) >= after + 5, 30_000);
    const warnings = agent.output().stderr.split('\n').filter((l) => l.includes('secret scheduled for deletion'));
    assert.equal(warnings.length, 1, warnings.join('\n'));
    const w = JSON.parse(warnings[0]!) as { level: string; secret: string; secretId: string; deletedDate: string };
    assert.equal(w.level, 'warn');
    assert.equal(w.secret, 'db');
    assert.equal(w.secretId, 'del/db');
    assert.ok(!Number.isNaN(Date.parse(w.deletedDate)), w.deletedDate);
    assert.doesNotMatch(agent.output().stderr, /db-value|api-value/);
    assert.equal(await readOr(join(dir, 'out', 'db')), 'db-value', 'the last value keeps serving');
    assert.equal((await fetch(`${base}/readyz`)).status, 200);

    await moto.sm('RestoreSecret', { SecretId: 'del/db' });
    await agent.waitFor(/secret is no longer scheduled for deletion/);
    assert.equal(sample(await scrape(), gauge), 0);
    assert.equal(await readOr(join(dir, 'out', 'db')), 'db-value');
  });
});
