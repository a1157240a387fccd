// Identity files: the projected web identity token (IRSA) missing, empty, or
// rotated while the sidecar runs; the EKS Pod Identity token file with a
// trailing newline. The real CLI against moto's Secrets Manager, with STS
// reached through the recording STS front (test/support/chaos-sts.ts) so the
// token each AssumeRoleWithWebIdentity call carries is visible.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningAgent } from '../support/cli.ts';
import { CANARY, Leaks, chaosAgent, chaosRun, get, hasStackTrace, listenAddress, readOr, waitUntil } from '../support/chaos-harness.ts';
import { startPodIdentityEndpoint, startStsFront, type PodIdentityEndpoint, type StsFront } from '../support/chaos-sts.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { stopAll } from '../support/procs.ts';
import { writeCase } from '../support/workspace.ts';

describe('identity files', { concurrency: 1 }, () => {
  let moto: Moto;
  let sts: StsFront;
  let root: string;
  const leaks = new Leaks();
  const agents: RunningAgent[] = [];

  before(async () => {
    moto = await startMoto();
    sts = await startStsFront(moto.url);
    root = await mkdtemp(join(tmpdir(), 'sa-chaos-identity-'));
    await moto.sm('CreateSecret', { Name: 'chaos/identity/db', SecretString: JSON.stringify({ password: `v1-${CANARY}` }) });
  });

  after(async () => {
    await stopAll(agents);
    await sts?.close();
    await moto?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  async function caseDir(name: string, interval = '500ms') {
    const { dir, out, config } = await writeCase(
      root,
      name,
      (out) => `source: { region: us-east-1 }
outputDir: ${out}
refresh: { interval: ${interval}, jitter: 0.1, rotationAware: false }
secrets:
  db: { id: chaos/identity/db }
files:
  - path: password
    template: "{{ secrets.db.password }}"
server: { listen: "127.0.0.1:0" }
`,
    );
    return { dir, out, config };
  }

  const irsaEnv = (tokenFile: string) => agentEnv(moto, tokenFile, { AWS_ENDPOINT_URL_STS: sts.url });

  it('when the web identity token file is missing, init exits 1 naming the token file, without a stack trace', async () => {
    const c = await caseDir('missing');
    const r = await chaosRun('missing token init', ['init', '--config', c.config, '--timeout', '5s', '--log-level', 'debug'], leaks, { env: irsaEnv(join(c.dir, 'no-such-token')) });
    const msg = r.stderr.split('\n').find((l) => /token|credentials/i.test(l) && l.includes('"level":"error"'));
    process.stdout.write(`# token missing (init): exit ${r.code}: ${msg ? (JSON.parse(msg) as { msg: string }).msg.slice(0, 300) : '(no message)'}\n`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /no-such-token|AWS_WEB_IDENTITY_TOKEN_FILE/, 'the message names the token file');
    assert.ok(!hasStackTrace(r.stderr), 'stack trace in the output');
    assert.doesNotMatch(r.stderr, /unexpected error|"level":"fatal"/);
    assert.equal(await readOr(join(c.out, 'password'), 'absent'), 'absent');
  });

  it('when the token file appears only after the sidecar started, it stays not-ready, then becomes ready', async () => {
    const c = await caseDir('late');
    const token = join(c.dir, 'token');
    const agent = chaosAgent('late token run', ['run', '--config', c.config, '--log-level', 'debug'], leaks, { env: irsaEnv(token) });
    agents.push(agent);
    const base = await listenAddress(agent);
    await agent.waitFor(/first render not complete/, 15_000);
    assert.equal((await get(`${base}/readyz`, leaks)).status, 503);
    assert.equal((await get(`${base}/healthz`, leaks)).status, 200);
    const t = Date.now();
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.late-token.sig');
    await agent.waitFor(/first render complete/, 20_000);
    process.stdout.write(`# token appeared late: ready ${Date.now() - t} ms after it was written\n`);
    assert.equal((await get(`${base}/readyz`, leaks)).status, 200);
    assert.equal(await readOr(join(c.out, 'password')), `v1-${CANARY}`);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('when the web identity token file is empty, init exits 1 with a clear message and writes nothing', async () => {
    const c = await caseDir('empty');
    const token = join(c.dir, 'token');
    await writeFile(token, '');
    const since = Date.now();
    const r = await chaosRun('empty token init', ['init', '--config', c.config, '--timeout', '5s', '--log-level', 'debug'], leaks, { env: irsaEnv(token) });
    const msg = r.stderr.split('\n').find((l) => l.includes('"level":"error"'));
    process.stdout.write(
      `# token empty (init): exit ${r.code} after ${sts.count('AssumeRoleWithWebIdentity', since)} STS calls: ${msg ? (JSON.parse(msg) as { msg: string }).msg.slice(0, 300) : '(no message)'}\n`,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /token/i, 'the message mentions the token');
    assert.ok(!hasStackTrace(r.stderr));
    assert.doesNotMatch(r.stderr, /unexpected error|"level":"fatal"/);
    assert.equal(await readOr(join(c.out, 'password'), 'absent'), 'absent');
  });

  it('when the token is rotated mid-run, the next credential refresh sends the new token', async () => {
    // The kubelet rotates a projected token by swapping a ..data link, like the agent's own volume.
    const c = await caseDir('rotate');
    const tokens = join(c.dir, 'tokens');
    await mkdir(join(tokens, '..v1'), { recursive: true });
    await writeFile(join(tokens, '..v1', 'token'), 'eyJhbGciOiJSUzI1NiJ9.token-A.sig');
    await symlink('..v1', join(tokens, '..data'));
    await symlink('..data/token', join(tokens, 'token'));
    // The SDK refreshes 5 min before Expiration: answers that expire in 5 min + 2 s make it refresh ~2 s after each.
    sts.expiresInSec = 5 * 60 + 2;
    try {
      const since = Date.now();
      const agent = chaosAgent('rotate run', ['run', '--config', c.config, '--log-level', 'debug'], leaks, { env: irsaEnv(join(tokens, 'token')) });
      agents.push(agent);
      const base = await listenAddress(agent);
      await agent.waitFor(/first render complete/, 20_000);
      const calls = () => sts.requests.filter((r) => r.action === 'AssumeRoleWithWebIdentity' && r.at >= since);
      await waitUntil('a refresh with token A', () => calls().length >= 2, 15_000);
      assert.ok(calls().every((r) => r.token === 'eyJhbGciOiJSUzI1NiJ9.token-A.sig'));

      await mkdir(join(tokens, '..v2'));
      await writeFile(join(tokens, '..v2', 'token'), 'eyJhbGciOiJSUzI1NiJ9.token-B.sig');
      await symlink('..v2', join(tokens, '..data_tmp'));
      await rename(join(tokens, '..data_tmp'), join(tokens, '..data'));
      const rotated = Date.now();
      await waitUntil('a refresh with token B', () => calls().some((r) => r.token?.includes('token-B')), 15_000);
      const first = calls().find((r) => r.token?.includes('token-B'))!;
      // After the first call with B, none with A (a request already in flight at the swap may still carry A).
      const late = calls().filter((r) => r.at > first.at && !r.token?.includes('token-B'));
      assert.deepEqual(late, [], 'a refresh after the rotation sent the old token');
      process.stdout.write(`# token rotated mid-run: the next AssumeRoleWithWebIdentity (${first.at - rotated} ms later) carried the new token; ${calls().length} STS calls in all\n`);

      // Still serving: a secret change goes through with the new credentials.
      await moto.sm('PutSecretValue', { SecretId: 'chaos/identity/db', SecretString: JSON.stringify({ password: `v2-${CANARY}` }) });
      await waitUntil('rotation after the token change', async () => (await readOr(join(c.out, 'password'))) === `v2-${CANARY}`, 10_000);
      assert.equal((await get(`${base}/readyz`, leaks)).status, 200);
      agent.child.kill('SIGTERM');
      assert.equal((await agent.exited).code, 0);
      assert.doesNotMatch(agent.output().stderr, /unhandled|"level":"fatal"/i);
    } finally {
      sts.expiresInSec = undefined;
    }
  });

  describe('EKS Pod Identity', () => {
    let ep: PodIdentityEndpoint;
    before(async () => {
      ep = await startPodIdentityEndpoint();
      ep.expectToken = 'eks-pod-identity-token-value';
    });
    after(() => ep?.close());

    const podEnv = (tokenFile: string) => {
      const env = agentEnv(moto, tokenFile, { AWS_CONTAINER_CREDENTIALS_FULL_URI: ep.url, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile });
      delete env.AWS_ROLE_ARN;
      delete env.AWS_WEB_IDENTITY_TOKEN_FILE;
      delete env.AWS_ROLE_SESSION_NAME;
      return env;
    };

    it('when the Pod Identity token file has no trailing newline, init gets credentials and writes the files', async () => {
      const c = await caseDir('pod-plain');
      await writeFile(join(c.dir, 'pod-token'), 'eks-pod-identity-token-value');
      const r = await chaosRun('pod plain init', ['init', '--config', c.config, '--timeout', '10s'], leaks, { env: podEnv(join(c.dir, 'pod-token')) });
      assert.equal(r.code, 0, r.stderr);
      assert.match(await readOr(join(c.out, 'password')), new RegExp(`^v\\d-${CANARY}$`));
    });

    it('when the Pod Identity token file ends with a newline (as written by many tools), the token is still accepted', async () => {
      const c = await caseDir('pod-newline');
      await writeFile(join(c.dir, 'pod-token'), 'eks-pod-identity-token-value\n');
      const since = Date.now();
      const r = await chaosRun('pod newline init', ['init', '--config', c.config, '--timeout', '8s'], leaks, { env: podEnv(join(c.dir, 'pod-token')) });
      const seen = ep.requests.filter((q) => q.at >= since).map((q) => JSON.stringify(q.authorization));
      const msg = r.stderr.split('\n').find((l) => l.includes('"level":"error"'));
      process.stdout.write(
        `# Pod Identity token with a trailing newline: init exit ${r.code}; endpoint saw ${seen.length} requests ${[...new Set(seen)].join(', ')}` +
          `${r.code === 0 ? '' : `; error: ${msg ? (JSON.parse(msg) as { msg: string }).msg.slice(0, 240) : '(none)'}`}\n`,
      );
      assert.ok(!hasStackTrace(r.stderr));
      assert.equal(r.code, 0, `init failed with a Pod Identity token file ending in a newline:\n${r.stderr.slice(-1500)}`);
      assert.ok(seen.includes(JSON.stringify('eks-pod-identity-token-value')), 'the endpoint got the token without the newline');
      assert.match(await readOr(join(c.out, 'password')), /^v\d-/);
    });
  });

  it('when the suite is done, no secret value appeared in any output or endpoint', () => {
    leaks.assertClean('identity');
  });
});
