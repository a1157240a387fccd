// `run` whose first render fails recovers by itself: until the first generation
// exists, every retry re-checks every secret (a version check, a fetch only where
// the version moved) and re-renders, so fixing the secret is enough for /readyz to
// turn 200, on moto and on the file source. Real CLI, real files, real HTTP.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serverUrl, startAgent, type RunningAgent } from '../support/cli.ts';
import { stopAgent } from '../support/procs.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { readOr, waitUntil } from '../support/wait.ts';

/** The value of one series in a scrape (exact name and labels), or undefined. */
function sample(scrape: string, series: string): number | undefined {
  for (const line of scrape.split('\n')) if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  return undefined;
}


const retries = (agent: RunningAgent) => agent.output().stderr.split('\n').filter((l) => l.includes('first render not complete')).length;

describe('run: a first render that fails is retried until the secret is fixed', () => {
  let moto: Moto;
  let root: string;
  const agents: RunningAgent[] = [];

  before(async () => {
    moto = await startMoto();
    root = await mkdtemp(join(tmpdir(), 'sa-first-render-'));
    await writeFile(join(root, 'token'), 'projected-token');
  });

  after(async () => {
    await Promise.all(agents.map((a) => stopAgent(a)));
    await moto?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('on moto: a template reading a key the secret lacks recovers after PutSecretValue, re-fetching only the secret that moved', async () => {
    const dir = join(root, 'aws');
    await mkdir(dir);
    await moto.sm('CreateSecret', { Name: 'fr/rot', SecretString: JSON.stringify({ user: 'u' }) });
    await moto.sm('CreateSecret', { Name: 'fr/other', SecretString: 'other-value' });
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { region: us-east-1 }
outputDir: ${join(dir, 'out')}
refresh: { interval: 2s }
secrets:
  rot: { id: fr/rot }
  other: { id: fr/other }
files:
  - path: creds
    template: "PASS={{ secrets.rot.pass }}"
  - path: other
    secret: other
server: { listen: "127.0.0.1:0" }
`,
    );
    const agent = startAgent(['run', '--config', join(dir, 'config.yaml')], { env: agentEnv(moto, join(root, 'token')) });
    agents.push(agent);
    const base = await serverUrl(agent);
    await waitUntil('two retries of the first render', () => retries(agent) >= 2, 30_000);
    const notReady = await fetch(`${base}/readyz`);
    assert.equal(notReady.status, 503);
    assert.equal(await notReady.text(), 'not ready: cannot render file "creds" (the log says why)\n', '/readyz names the file');
    let scrape = await (await fetch(`${base}/metrics`)).text();
    assert.equal(sample(scrape, 'secrets_agent_secret_fetches_total{secret="other",result="success"}'), 1, 'an unchanged secret is not fetched again');

    await moto.sm('PutSecretValue', { SecretId: 'fr/rot', SecretString: JSON.stringify({ user: 'u', pass: 'p1' }) });
    await waitUntil('/readyz 200', async () => (await fetch(`${base}/readyz`)).status === 200, 30_000);
    assert.equal(await readOr(join(dir, 'out', 'creds')), 'PASS=p1');
    assert.equal(await readOr(join(dir, 'out', 'other')), 'other-value');
    scrape = await (await fetch(`${base}/metrics`)).text();
    assert.equal(sample(scrape, 'secrets_agent_secret_fetches_total{secret="other",result="success"}'), 1, 'other was fetched once in all');
    assert.equal(sample(scrape, 'secrets_agent_secret_fetches_total{secret="rot",result="success"}'), 2, 'rot: the first load and the moved version');
    assert.ok((sample(scrape, 'secrets_agent_secret_checks_total{secret="other",result="success"}') ?? 0) >= 1, 'the retries re-checked the secrets they held');
    assert.equal(sample(scrape, 'secrets_agent_ready'), 1);
  });

  it('on the file source: the edit that adds the missing key makes the agent ready at once', async () => {
    const dir = join(root, 'file');
    await mkdir(dir);
    await writeFile(join(dir, 'secrets.yaml'), 'rot: { user: "u" }\nother: "o"\n');
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 1h }
secrets:
  rot: { id: rot }
  other: { id: other }
files:
  - path: creds
    template: "PASS={{ secrets.rot.pass }}"
server: { listen: "127.0.0.1:0" }
`,
    );
    const agent = startAgent(['run', '--config', join(dir, 'config.yaml')]);
    agents.push(agent);
    const base = await serverUrl(agent);
    await agent.waitFor(/first render not complete/);
    assert.equal((await fetch(`${base}/readyz`)).status, 503);
    await writeFile(join(dir, 'secrets.yaml'), 'rot: { user: "u", pass: "p2" }\nother: "o"\n');
    // The file change wakes the retry at once (the backoff alone would get there later).
    await waitUntil('the file', async () => (await readOr(join(dir, 'out', 'creds'))) === 'PASS=p2', 30_000);
    // The files appear when ..data is switched; ready follows once the write has finished (its fsyncs and
    // clean-up), a few I/O steps later: /readyz may still be 503 for those milliseconds, never after.
    await waitUntil('/readyz 200 right after the write', async () => (await fetch(`${base}/readyz`)).status === 200, 2_000);
    await agent.waitFor(/first render complete; ready/);
  });

  it('/readyz names the secrets it waits for and their error codes, never a value, and at most five of them', async () => {
    const dir = join(root, 'missing');
    await mkdir(dir);
    await writeFile(join(dir, 'secrets.yaml'), 'here: "canary-ready-7f3a"\n');
    const names = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7'];
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 1h }
secrets:
  here: { id: here }
${names.map((n) => `  ${n}: { id: gone/${n} }`).join('\n')}
files:
  - path: here
    secret: here
server: { listen: "127.0.0.1:0" }
`,
    );
    const agent = startAgent(['run', '--config', join(dir, 'config.yaml')]);
    agents.push(agent);
    const base = await serverUrl(agent);
    await agent.waitFor(/first render not complete/);
    const res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    const body = await res.text();
    assert.match(body, /^not ready: waiting for secret "a1" \(ResourceNotFoundException\), secret "a2" \(ResourceNotFoundException\), .* and 2 more\n$/);
    assert.ok(!body.includes('canary-ready-7f3a'));
  });
});
