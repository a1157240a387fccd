// Credentials that last for days (README, "Identity: the pod's own, never the node's"): a sidecar
// outlives many STS sessions. The real CLI (`run`) against moto, with STS
// behind the recording STS front (test/support/chaos-sts.ts) that rewrites
// each answer's Expiration to now + 5 min + 2 s: the SDK refreshes 5 minutes
// before Expiration (docs/aws.md), so the agent re-assumes every ~2 s. Shown:
// each refresh re-reads the projected token file (a rotated token reaches STS);
// a token file missing for a while is one warning, files and readiness kept,
// and the next refresh after it returns succeeds; the credentials-expiration
// metric moves with every refresh; the same for EKS Pod Identity and for
// source.assumeRoleArn; an AccessDenied that appears mid-run is counted and
// logged per secret, the files kept, and an alert rule covers it.
import assert from 'node:assert/strict';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, serverUrl, type RunningAgent } from '../support/cli.ts';
import { metric } from '../support/chaos-harness.ts';
import { startPodIdentityEndpoint, startStsFront, type PodIdentityEndpoint, type StsFront } from '../support/chaos-sts.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { waitUntil } from '../support/wait.ts';
import { closeWorkspace, openWorkspace, writeCase } from '../support/workspace.ts';

const REPO = new URL('../..', import.meta.url);
const EXPIRES_IN = 5 * 60 + 2;

async function scrape(base: string): Promise<string> {
  return (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
}

describe('credentials that last for days', { concurrency: 1 }, () => {
  let moto: Moto;
  let sts: StsFront;
  let sm: Proxy;
  let pod: PodIdentityEndpoint;
  let root: string;
  const agents: RunningAgent[] = [];

  before(async () => {
    ({ moto, root } = await openWorkspace('sa-e2e-credentials-'));
    sts = await startStsFront(moto.url);
    sts.expiresInSec = EXPIRES_IN;
    sm = await startProxy(moto.url);
    pod = await startPodIdentityEndpoint();
    pod.expiresInSec = EXPIRES_IN;
    await moto.sm('CreateSecret', { Name: 'creds/db', SecretString: JSON.stringify({ password: 'pw-creds' }) });
    await moto.sm('CreateSecret', { Name: 'creds/api', SecretString: 'api-creds' });
  });

  after(() => closeWorkspace({ moto, root }, agents, [pod, sm, sts]));

  async function start(name: string, env: NodeJS.ProcessEnv, sourceExtra = '') {
    const { dir, out, config } = await writeCase(
      root,
      name,
      (out) => `source: { region: us-east-1${sourceExtra} }
outputDir: ${out}
refresh: { interval: 500ms, jitter: 0.1, rotationAware: false }
secrets:
  db: { id: creds/db }
  api: { id: creds/api }
files:
  - path: password
    template: "{{ secrets.db.password }}"
  - path: api
    template: "{{ secrets.api }}"
server: { listen: "127.0.0.1:0" }
`,
    );
    const agent = startAgent(['run', '--config', config, '--log-level', 'debug'], { env: { ...env, AWS_ENDPOINT_URL: sm.url, AWS_ENDPOINT_URL_STS: sts.url } });
    agents.push(agent);
    const base = await serverUrl(agent, 20_000);
    await agent.waitFor(/first render complete/, 30_000).catch((e: unknown) => {
      console.log(agent.output().stderr.split('\n').filter((l) => /"level":"(error|warn)"/.test(l) && !l.includes('BatchGet')).slice(0, 3).join('\n'));
      throw e;
    });
    return { dir, out, agent, base };
  }

  const expiration = async (base: string): Promise<number> => metric(await scrape(base), 'secrets_agent_credentials_expiration_timestamp_seconds') ?? 0;

  /** Waits until the expiration gauge has moved `times` times; returns the distinct values seen. */
  async function expirationMoves(base: string, times: number): Promise<number[]> {
    const seen = [await expiration(base)];
    await waitUntil(`the credentials-expiration metric moving ${times} times`, async () => {
      const v = await expiration(base);
      if (v !== seen.at(-1)) seen.push(v);
      return seen.length > times;
    }, 30_000);
    return seen;
  }

  const lines = (agent: RunningAgent, re: RegExp): string[] => agent.output().stderr.split('\n').filter((l) => re.test(l));

  it('with IRSA, the agent re-assumes before expiry, re-reads the token each time, and rides out a missing token file', async () => {
    const tokens = join(root, 'irsa-tokens');
    await mkdir(tokens, { recursive: true });
    const token = join(tokens, 'token');
    const put = async (content: string) => {
      await writeFile(`${token}.tmp`, content);
      await rename(`${token}.tmp`, token);
    };
    await put('eyJhbGciOiJSUzI1NiJ9.token-A.sig');
    const since = Date.now();
    const { out, agent, base } = await start('irsa', agentEnv(moto, token));
    const calls = () => sts.requests.filter((r) => r.action === 'AssumeRoleWithWebIdentity' && r.at >= since);

    const moves = await expirationMoves(base, 3);
    assert.ok(moves.slice(1).every((v, i) => v > (moves[i] ?? 0)), `the expiration metric did not move forward: ${moves.join(', ')}`);
    assert.ok(calls().length >= 3);

    await put('eyJhbGciOiJSUzI1NiJ9.token-B.sig');
    await waitUntil('STS receiving token B', () => calls().some((r) => r.token?.includes('token-B')), 20_000);

    // The token file disappears (as during a broken rotation) for a while: the current credentials still hold.
    await rm(token);
    const gone = Date.now();
    await agent.waitFor(/cannot refresh AWS credentials/, 20_000);
    const checks = async () => metric(await scrape(base), 'secrets_agent_secret_checks_total', { result: 'success' }) ?? 0;
    const okBefore = await checks();
    await waitUntil('checks going on without the token file', async () => (await checks()) >= okBefore + 8, 30_000);
    assert.equal((await fetch(`${base}/readyz`)).status, 200, 'not ready while the token file is missing');
    assert.equal(await readFile(join(out, 'password'), 'utf8'), 'pw-creds');
    assert.equal(lines(agent, /cannot refresh AWS credentials/).length, 1, 'one line for the whole outage');
    assert.deepEqual(lines(agent, /"level":"error"/), [], 'an error was logged while the credentials still held');
    const missingFor = Date.now() - gone;

    await put('eyJhbGciOiJSUzI1NiJ9.token-C.sig');
    await waitUntil('STS receiving token C', () => calls().some((r) => r.token?.includes('token-C')), 20_000);
    await agent.waitFor(/AWS credentials refreshed again/, 20_000);
    await expirationMoves(base, 1);
    const byToken = (t: string) => calls().filter((r) => r.token?.includes(t)).length;
    console.log(
      `# IRSA: ${calls().length} AssumeRoleWithWebIdentity refreshes (token re-reads that reached STS: A ${byToken('token-A')}, B ${byToken('token-B')}, C ${byToken('token-C')}); ` +
        `token file missing for ${missingFor} ms: ${lines(agent, /cannot refresh AWS credentials/).length} warning, readiness and files kept; expiration metric moved ${moves.length - 1}+1 times`,
    );
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('with EKS Pod Identity, the agent refreshes before expiry from the endpoint, re-reading its token file each time', async () => {
    const tokenFile = join(root, 'pod-token');
    await writeFile(tokenFile, 'pod-token-A\n');
    const env = agentEnv(moto, tokenFile, { AWS_CONTAINER_CREDENTIALS_FULL_URI: pod.url, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile });
    for (const k of ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_SESSION_NAME']) delete env[k];
    const since = Date.now();
    const { agent, base } = await start('pod', env);
    const moves = await expirationMoves(base, 3);
    await writeFile(`${tokenFile}.tmp`, 'pod-token-B\n');
    await rename(`${tokenFile}.tmp`, tokenFile);
    await waitUntil('the endpoint receiving token B', () => pod.requests.some((r) => r.at >= since && r.authorization === 'pod-token-B'), 20_000);
    const reqs = pod.requests.filter((r) => r.at >= since);
    console.log(
      `# Pod Identity: ${reqs.length} credential fetches (token A ${reqs.filter((r) => r.authorization === 'pod-token-A').length}, B ${reqs.filter((r) => r.authorization === 'pod-token-B').length}); expiration metric moved ${moves.length - 1} times`,
    );
    assert.ok(moves.slice(1).every((v, i) => v > (moves[i] ?? 0)));
    assert.equal(identityOf(agent), 'pod-identity');
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('with source.assumeRoleArn, the assumed role is re-assumed before its expiry too', async () => {
    const token = join(root, 'chain-token');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.chain.sig');
    const since = Date.now();
    const { agent, base } = await start('chain', agentEnv(moto, token), ', assumeRoleArn: "arn:aws:iam::123456789012:role/cross-account"');
    const moves = await expirationMoves(base, 3);
    const assumed = sts.count('AssumeRole', since);
    console.log(`# assumeRoleArn: ${assumed} AssumeRole and ${sts.count('AssumeRoleWithWebIdentity', since)} AssumeRoleWithWebIdentity refreshes; expiration metric moved ${moves.length - 1} times`);
    assert.ok(assumed >= 3, `only ${assumed} AssumeRole calls`);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('when AccessDenied appears mid-run (the role\'s policy changed), each secret is counted and logged once, the files kept, and an alert covers it', async () => {
    const token = join(root, 'denied-token');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.denied.sig');
    const { out, agent, base } = await start('denied', agentEnv(moto, token));
    sm.fault = (op) =>
      op === 'GetSecretValue' || op === 'DescribeSecret'
        ? { kind: 'status', status: 400, body: JSON.stringify({ __type: 'AccessDeniedException', message: 'User is not authorized to perform: secretsmanager:DescribeSecret' }), headers: { 'content-type': 'application/x-amz-json-1.1' } }
        : undefined;
    try {
      const errors = async () => metric(await scrape(base), 'secrets_agent_secret_checks_total', { result: 'error' }) ?? 0;
      await waitUntil('checks failing with AccessDenied', async () => (await errors()) >= 10, 30_000);
      const denied = lines(agent, /AccessDenied/);
      console.log(`# AccessDenied mid-run: ${await errors()} failed checks, ${denied.length} log lines`);
      assert.equal(denied.length, 2, `one line per secret:\n${denied.join('\n')}`);
      assert.ok(denied.some((l) => l.includes('"secret":"db"')) && denied.some((l) => l.includes('"secret":"api"')));
      assert.equal(await readFile(join(out, 'password'), 'utf8'), 'pw-creds');
      assert.equal(await readFile(join(out, 'api'), 'utf8'), 'api-creds');
      const rules = await readFile(new URL('k8s-examples/monitoring/prometheusrule.yaml', REPO), 'utf8');
      assert.match(rules, /alert: SecretsAgentRefreshFailing\n\s+expr: \|\n[\s\S]*?secrets_agent_secret_checks_total\{result="error"\}/);
    } finally {
      sm.fault = undefined;
    }
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });
});

function identityOf(agent: RunningAgent): string | undefined {
  const l = agent.output().stderr.split('\n').find((x) => x.includes('"msg":"identity"'));
  return l ? (JSON.parse(l) as { identity?: string }).identity : undefined;
}
