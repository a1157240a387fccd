// The pod's identity, never the node's, by default (README, "Identity: the
// pod's own, never the node's"). The real CLI against moto, with a fake EC2 instance metadata
// service (test/support/fake-imds.ts) standing in for the node's role: with no
// IRSA, Pod Identity, environment keys or profile, init and run exit 2 naming
// the ServiceAccount annotation / Pod Identity association to create, never ask
// IMDS and touch nothing; with source.allowNodeRole they use the default chain
// (IMDS) and say so with a warning. The identity line names the kind in use.
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { startPodIdentityEndpoint, type PodIdentityEndpoint } from '../support/chaos-sts.ts';
import { startFakeImds, type FakeImds } from '../support/fake-imds.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { closeWorkspace, openWorkspace, writeCase } from '../support/workspace.ts';

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** The `identity` log record of an agent's output. */
function identityLine(stderr: string): Record<string, string> | undefined {
  for (const l of stderr.split('\n')) {
    if (!l.includes('"msg":"identity"')) continue;
    return JSON.parse(l) as Record<string, string>;
  }
  return undefined;
}

describe('identity: the pod\'s own, never the node\'s by default', { concurrency: 1 }, () => {
  let moto: Moto;
  let imds: FakeImds;
  let pod: PodIdentityEndpoint;
  let root: string;
  const agents: RunningAgent[] = [];

  before(async () => {
    ({ moto, root } = await openWorkspace('sa-e2e-identity-'));
    imds = await startFakeImds();
    pod = await startPodIdentityEndpoint();
    await moto.sm('CreateSecret', { Name: 'identity/db', SecretString: JSON.stringify({ password: 'pw-identity' }) });
  });

  after(() => closeWorkspace({ moto, root }, agents, [pod, imds]));

  /** No identity of the pod's own: nothing AWS from the host, HOME without ~/.aws, IMDS reachable (the fake). */
  const bareEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
    const env = agentEnv(moto, '/nonexistent', { HOME: root, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url });
    for (const k of ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_SESSION_NAME', 'AWS_EC2_METADATA_DISABLED']) delete env[k];
    return { ...env, ...extra };
  };

  function caseDir(name: string, sourceExtra = '') {
    return writeCase(
      root,
      name,
      (out) => `source: { region: us-east-1${sourceExtra} }
outputDir: ${out}
refresh: { interval: 1s }
secrets:
  db: { id: identity/db }
files:
  - path: password
    template: "{{ secrets.db.password }}"
server: { listen: "127.0.0.1:0" }
`,
    );
  }

  for (const command of ['init', 'run'] as const) {
    it(`when the pod has no identity of its own, ${command} exits 2 naming the annotation and the association to create, never asks IMDS, touches nothing`, async () => {
      const c = await caseDir(`none-${command}`);
      const before = imds.requests.length;
      const r = await runAgent([command, '--config', c.config, ...(command === 'init' ? ['--timeout', '10s'] : [])], { env: bareEnv(), timeoutMs: 30_000 });
      const line = r.stderr.split('\n').find((l) => l.includes('"level":"error"')) ?? '';
      console.log(`# ${command} without a pod identity: exit ${r.code}; IMDS requests ${imds.requests.length - before}; ${line.slice(0, 160)}…`);
      assert.equal(r.code, 2, r.stderr);
      assert.match(line, /"key":"source\.allowNodeRole"/);
      assert.match(line, /eks\.amazonaws\.com\/role-arn: arn:aws:iam::ACCOUNT:role\/ROLE/);
      assert.match(line, /aws eks create-pod-identity-association/);
      assert.match(line, /AWS_ROLE_ARN \+ AWS_WEB_IDENTITY_TOKEN_FILE/);
      assert.match(line, /source\.allowNodeRole: true/);
      assert.equal(r.stderr.split('\n').filter((l) => l.includes('"level":"error"')).length, 1, 'one error line');
      assert.doesNotMatch(r.stderr, /"level":"fatal"|unexpected error/);
      assert.equal(imds.requests.length - before, 0, 'the agent asked instance metadata (the node\'s role)');
      assert.equal(await exists(c.out), false, 'the output dir (files, lock) was touched');
      assert.doesNotMatch(r.stderr, /"msg":"identity"/);
    });
  }

  it('when only AWS_ROLE_ARN is set (no token file), the error says which half of IRSA is missing', async () => {
    const c = await caseDir('half-irsa');
    const r = await runAgent(['init', '--config', c.config, '--timeout', '10s'], { env: bareEnv({ AWS_ROLE_ARN: 'arn:aws:iam::123456789012:role/app' }) });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not/);
    assert.equal(await exists(c.out), false);
  });

  it('when source.allowNodeRole is true, init uses the default chain (IMDS), warns at start-up and says node-role in the identity line', async () => {
    const c = await caseDir('node-role-init', ', allowNodeRole: true');
    const before = imds.credentialFetches();
    const r = await runAgent(['init', '--config', c.config, '--timeout', '20s'], { env: bareEnv() });
    const fetched = imds.credentialFetches() - before;
    console.log(`# init with allowNodeRole: exit ${r.code}; IMDS credential fetches ${fetched}`);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fetched >= 1, 'the node role credentials were not fetched from IMDS');
    assert.equal(await readFile(join(c.out, 'password'), 'utf8'), 'pw-identity');
    const warn = r.stderr.split('\n').filter((l) => l.includes('"level":"warn"') && l.includes('source.allowNodeRole'));
    assert.equal(warn.length, 1, r.stderr);
    assert.match(warn[0] ?? '', /instance metadata/);
    assert.equal(identityLine(r.stderr)?.identity, 'node-role');
  });

  it('when source.allowNodeRole is true, run uses IMDS, warns once and becomes ready', async () => {
    const c = await caseDir('node-role-run', ', allowNodeRole: true');
    const before = imds.credentialFetches();
    const agent = startAgent(['run', '--config', c.config], { env: bareEnv() });
    agents.push(agent);
    await agent.waitFor(/first render complete/, 30_000);
    assert.ok(imds.credentialFetches() - before >= 1);
    const { stderr } = agent.output();
    assert.equal(identityLine(stderr)?.identity, 'node-role');
    assert.equal(stderr.split('\n').filter((l) => l.includes('"level":"warn"') && l.includes('source.allowNodeRole')).length, 1);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('when the pod has an identity, the identity line names it and IMDS is never asked, even with allowNodeRole', async () => {
    const token = join(root, 'irsa-token');
    await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.identity-test.sig');
    const podToken = join(root, 'pod-token');
    await writeFile(podToken, 'pod-identity-token');
    const profileDir = join(root, 'profile');
    await mkdir(profileDir, { recursive: true });
    await writeFile(join(profileDir, 'credentials'), '[default]\naws_access_key_id = AKIAPROFILE000000001\naws_secret_access_key = profile-secret\n');
    const cases: [string, NodeJS.ProcessEnv][] = [
      ['irsa', agentEnv(moto, token, { HOME: root, AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url })],
      ['pod-identity', bareEnv({ AWS_CONTAINER_CREDENTIALS_FULL_URI: pod.url, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: podToken })],
      ['env-keys', bareEnv({ AWS_ACCESS_KEY_ID: 'AKIAENVKEYS000000001', AWS_SECRET_ACCESS_KEY: 'env-secret' })],
      ['profile', bareEnv({ AWS_SHARED_CREDENTIALS_FILE: join(profileDir, 'credentials') })],
    ];
    const before = imds.requests.length;
    for (const [kind, env] of cases) {
      const c = await caseDir(`kind-${kind}`, ', allowNodeRole: true');
      const r = await runAgent(['init', '--config', c.config, '--timeout', '20s'], { env });
      console.log(`# identity ${kind}: init exit ${r.code}; identity line ${JSON.stringify(identityLine(r.stderr)?.credentials)}`);
      assert.equal(r.code, 0, `${kind}: ${r.stderr}`);
      assert.equal(identityLine(r.stderr)?.identity, kind);
      assert.doesNotMatch(r.stderr, /source\.allowNodeRole is true/, `${kind}: the node-role warning with an identity of the pod's own`);
    }
    assert.equal(imds.requests.length - before, 0, 'IMDS was asked although the pod has its own identity');
  });

  it('when allowNodeRole is not a boolean, validate exits 2 naming file:line', async () => {
    const c = await caseDir('bad-key', ', allowNodeRole: "yes"');
    const r = await runAgent(['validate', '--config', c.config], { env: bareEnv() });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stdout + r.stderr, /config\.yaml:1: source\.allowNodeRole: .*true or false/);
  });
});
