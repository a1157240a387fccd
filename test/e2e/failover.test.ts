// source.failoverRegion, end to end: the real CLI against moto behind the
// fault proxy (test/support/proxy.ts). Both regions go to the same endpoint
// (AWS_ENDPOINT_URL); the proxy tells them apart by the SigV4 credential scope
// of the Authorization header (`Credential=AKID/20261201/us-east-1/secretsmanager/aws4_request`)
// and answers every request signed for the primary region with a fault. moto
// is region-aware: the failover region's secrets and parameters are created by
// calling it with that region (or as real replicas: CreateSecret AddReplicaRegions).
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, serverUrl, startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, MOTO_ACCOUNT, type Moto } from '../support/moto.ts';
import { unavailable, type Fault, type Proxy, type Recorded } from '../support/proxy.ts';
import { readOr, waitUntil } from '../support/wait.ts';
import { closeWorkspace, openWorkspace, writeCase } from '../support/workspace.ts';

const CANARY = 'CANARY-failover-5b1d07';
const PRIMARY = 'us-east-1';
const FAILOVER = 'us-west-2';

/** The region a request is signed for (undefined: unsigned, e.g. AssumeRoleWithWebIdentity). */
function regionOf(r: Recorded): string | undefined {
  const auth = r.headers.authorization;
  return typeof auth === 'string' ? /Credential=[^/]+\/\d{8}\/([a-z0-9-]+)\//.exec(auth)?.[1] : undefined;
}

const accessDenied: Fault = {
  kind: 'status',
  status: 400,
  body: JSON.stringify({ __type: 'AccessDeniedException', message: 'User is not authorized to perform this action' }),
  headers: { 'content-type': 'application/x-amz-json-1.1' },
};

/** Call moto in a region (moto keeps each region's state apart). */
function call(moto: Moto, service: 'secretsmanager' | 'ssm', region: string, operation: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  return moto.call(service, operation, body, region);
}

describe('source.failoverRegion against moto', () => {
  let moto: Moto;
  let proxy: Proxy;
  let root: string;
  const agents: RunningAgent[] = [];

  before(async () => {
    ({ moto, proxy, root } = await openWorkspace('sa-e2e-failover-', { proxy: true }));
  });

  after(() => closeWorkspace({ moto, proxy, root }, agents));

  const env = (): NodeJS.ProcessEnv => agentEnv({ url: proxy.url } as Moto, join(root, 'token'));
  /** Every request signed for the primary region gets `fault` while `down` says so. */
  const primaryAnswers = (fault: Fault | undefined): void => {
    proxy.fault = (_op, r) => (fault && regionOf(r) === PRIMARY ? fault : undefined);
  };
  const signedFor = (region: string, since: number): Recorded[] => proxy.requests.slice(since).filter((r) => regionOf(r) === region);

  it('when every request signed for the primary region gets 503, init renders a secret, a replica by ARN and an SSM parameter from the failover region and logs it', async () => {
    await call(moto, 'secretsmanager', PRIMARY, 'CreateSecret', { Name: 'fo/db', SecretString: `primary-${CANARY}` });
    await call(moto, 'secretsmanager', FAILOVER, 'CreateSecret', { Name: 'fo/db', SecretString: `replica-${CANARY}` });
    const created = await call(moto, 'secretsmanager', PRIMARY, 'CreateSecret', {
      Name: 'fo/api',
      SecretString: `api-${CANARY}`,
      AddReplicaRegions: [{ Region: FAILOVER }],
    });
    const arn = String(created.ARN);
    assert.match(arn, new RegExp(`^arn:aws:secretsmanager:${PRIMARY}:${MOTO_ACCOUNT}:secret:fo/api-`));
    await call(moto, 'ssm', PRIMARY, 'PutParameter', { Name: '/fo/flag', Value: `p-${CANARY}`, Type: 'SecureString' });
    await call(moto, 'ssm', FAILOVER, 'PutParameter', { Name: '/fo/flag', Value: `r-${CANARY}`, Type: 'SecureString' });
    const { out, config } = await writeCase(
      root,
      'init',
      (out) => `source: { region: ${PRIMARY}, failoverRegion: ${FAILOVER} }
outputDir: ${out}
secrets:
  db:   { id: fo/db }
  api:  { id: "${arn}" }
  flag: { parameter: /fo/flag }
files:
  - path: all.txt
    template: |
      db={{ secrets.db }} {{ meta.db.region }}
      api={{ secrets.api }} {{ meta.api.region }} {{ meta.api.arn }}
      flag={{ secrets.flag }} {{ meta.flag.region }}
`,
    );
    primaryAnswers(unavailable);
    const since = proxy.requests.length;
    const r = await runAgent(['init', '--config', config], { env: env() });
    primaryAnswers(undefined);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      await readFile(join(out, 'all.txt'), 'utf8'),
      `db=replica-${CANARY} ${FAILOVER}\napi=api-${CANARY} ${FAILOVER} ${arn.replace(PRIMARY, FAILOVER)}\nflag=r-${CANARY} ${FAILOVER}\n`,
    );
    // The primary was tried (the SDK's attempts), then the failover region answered.
    assert.ok(signedFor(PRIMARY, since).length >= 3, 'the primary is tried first');
    const failover = signedFor(FAILOVER, since);
    assert.ok(failover.some((q) => q.body.includes(arn.replace(PRIMARY, FAILOVER))), 'the ARN goes to the failover region with its region replaced');
    assert.ok(failover.some((q) => String(q.headers['x-amz-target']).startsWith('AmazonSSM.')), 'the parameter is read in the failover region');
    for (const name of ['db', 'api', 'flag']) {
      assert.match(r.stderr, new RegExp(`primary region ${PRIMARY} failed reading secret \\\\?"${name}\\\\?".*served from the failover region ${FAILOVER}`));
    }
    // One identity: the credentials from the one web-identity call serve both regions.
    assert.equal(proxy.requests.slice(since).filter((q) => q.operation === 'AssumeRoleWithWebIdentity').length, 1);
    assert.ok(!r.stdout.includes(CANARY) && !r.stderr.includes(CANARY), 'canary leaked into the agent output');
  });

  // A primary that accepts and never answers (hang), or resets every connection:
  // init, with a budget (--timeout 20s) well under the ~31 s the SDK's 3 attempts
  // of 10 s took before (docs/reliability.md, "Failover: time to the failover
  // region"; the numbers: test/bench/failover.ts), renders from the failover region.
  for (const fault of [{ kind: 'hang' }, { kind: 'reset' }] as const) {
    it(`when the primary region's requests ${fault.kind === 'hang' ? 'hang' : 'are reset'}, init fails over within its --timeout 20s`, async () => {
      const name = `fo/${fault.kind}`;
      await call(moto, 'secretsmanager', PRIMARY, 'CreateSecret', { Name: name, SecretString: `p-${CANARY}`, AddReplicaRegions: [{ Region: FAILOVER }] });
      const { out, config } = await writeCase(
        root,
        fault.kind,
        (o) => `source: { region: ${PRIMARY}, failoverRegion: ${FAILOVER} }
outputDir: ${o}
secrets:
  db: { id: ${name} }
files:
  - { path: db, template: "{{ secrets.db }} {{ meta.db.region }}" }
`,
      );
      primaryAnswers(fault);
      const since = proxy.requests.length;
      const r = await runAgent(['init', '--config', config, '--timeout', '20s'], { env: env() });
      primaryAnswers(undefined);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await readFile(join(out, 'db'), 'utf8'), `p-${CANARY} ${FAILOVER}`);
      assert.equal(signedFor(PRIMARY, since).filter((q) => q.operation !== 'AssumeRoleWithWebIdentity').length, 2, 'two attempts at the primary (FAILOVER_DEADLINES), then the failover region');
      assert.match(r.stderr, new RegExp(`primary region ${PRIMARY} failed reading secret \\\\?"db\\\\?".*served from the failover region ${FAILOVER}`));
      assert.ok(!r.stdout.includes(CANARY) && !r.stderr.includes(CANARY), 'canary leaked into the agent output');
    });
  }

  it('with an assumed role, STS AssumeRole goes to the region in use: the primary STS down, the failover region signs its own AssumeRole', async () => {
    await call(moto, 'secretsmanager', PRIMARY, 'CreateSecret', { Name: 'fo/role', SecretString: `p-${CANARY}`, AddReplicaRegions: [{ Region: FAILOVER }] });
    const dir = join(root, 'role');
    await mkdir(dir, { recursive: true });
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `source: { region: ${PRIMARY}, failoverRegion: ${FAILOVER}, assumeRoleArn: "arn:aws:iam::${MOTO_ACCOUNT}:role/other" }
outputDir: ${join(dir, 'out')}
secrets:
  role: { id: fo/role }
files:
  - { path: role, template: "{{ secrets.role }} {{ meta.role.region }}" }
`,
    );
    primaryAnswers(unavailable);
    const since = proxy.requests.length;
    const r = await runAgent(['init', '--config', config], { env: env() });
    primaryAnswers(undefined);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(dir, 'out', 'role'), 'utf8'), `p-${CANARY} ${FAILOVER}`);
    const assume = proxy.requests.slice(since).filter((q) => q.operation === 'AssumeRole');
    assert.ok(assume.some((q) => regionOf(q) === PRIMARY), 'AssumeRole tried in the primary region first');
    assert.ok(assume.some((q) => regionOf(q) === FAILOVER), 'AssumeRole signed for the failover region');
    assert.equal(proxy.requests.slice(since).filter((q) => q.operation === 'AssumeRoleWithWebIdentity').length, 1, 'the web identity is resolved once for both regions');
    assert.ok(!r.stdout.includes(CANARY) && !r.stderr.includes(CANARY), 'canary leaked into the agent output');
  });

  it('when the primary answers AccessDenied (or not found), init fails without a request to the failover region', async () => {
    await call(moto, 'secretsmanager', PRIMARY, 'CreateSecret', { Name: 'fo/denied', SecretString: `p-${CANARY}` });
    await call(moto, 'secretsmanager', FAILOVER, 'CreateSecret', { Name: 'fo/denied', SecretString: `r-${CANARY}` });
    await call(moto, 'secretsmanager', FAILOVER, 'CreateSecret', { Name: 'fo/only-replica', SecretString: `r-${CANARY}` });
    await call(moto, 'ssm', FAILOVER, 'PutParameter', { Name: '/fo/only-replica', Value: `r-${CANARY}`, Type: 'String' });
    const dir = join(root, 'denied');
    await mkdir(dir, { recursive: true });
    const write = async (secret: string): Promise<string> => {
      const config = join(dir, `${secret.replace(/\W/g, '')}.yaml`);
      await writeFile(
        config,
        `source: { region: ${PRIMARY}, failoverRegion: ${FAILOVER} }\noutputDir: ${join(dir, 'out')}\nsecrets:\n  s: ${secret}\nfiles:\n  - { path: s, secret: s }\n`,
      );
      return config;
    };

    primaryAnswers(accessDenied);
    let since = proxy.requests.length;
    let r = await runAgent(['init', '--config', await write('{ id: fo/denied }'), '--timeout', '5s'], { env: env() });
    primaryAnswers(undefined);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /AccessDeniedException/);
    assert.ok(signedFor(PRIMARY, since).length > 0);
    assert.deepEqual(signedFor(FAILOVER, since).map((q) => q.operation), [], 'no request to the failover region');
    assert.doesNotMatch(r.stderr, /failover region/);

    // Not found in the primary is no outage either (ResourceNotFoundException, ParameterNotFound).
    for (const secret of ['{ id: fo/only-replica }', '{ parameter: /fo/only-replica }']) {
      since = proxy.requests.length;
      r = await runAgent(['init', '--config', await write(secret), '--timeout', '5s'], { env: env() });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /ResourceNotFoundException|ParameterNotFound/);
      assert.deepEqual(signedFor(FAILOVER, since).map((q) => q.operation), [], `${secret}: no request to the failover region`);
    }
    assert.ok(!r.stdout.includes(CANARY) && !r.stderr.includes(CANARY), 'canary leaked into the agent output');
  });

  it('when validate sees a bad failoverRegion, it exits 2 with file:line', async () => {
    const dir = join(root, 'validate');
    await mkdir(dir, { recursive: true });
    for (const [source, line, want] of [
      [`{ region: ${PRIMARY}, failoverRegion: ${PRIMARY} }`, 1, /is source\.region itself/],
      ['{ failoverRegion: "west" }', 1, /"west" is not an AWS region/],
      ['{ failoverRegion: 2 }', 1, /must be a string/],
    ] as const) {
      const config = join(dir, 'config.yaml');
      await writeFile(config, `source: ${source}\noutputDir: /out\nsecrets:\n  a: { id: a }\nfiles:\n  - { path: a, secret: a }\n`);
      const r = await runAgent(['validate', '--config', config, '--log-format', 'text'], { env: env() });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`config\\.yaml:${line}: source\\.failoverRegion: .*${want.source}`));
    }
  });

  it('run: served from the failover region while the primary is down (counted), the next check after it recovers goes to the primary again', async () => {
    await call(moto, 'secretsmanager', PRIMARY, 'CreateSecret', { Name: 'fo/run', SecretString: `primary-${CANARY}` });
    await call(moto, 'secretsmanager', FAILOVER, 'CreateSecret', { Name: 'fo/run', SecretString: `replica-${CANARY}` });
    const { out, config } = await writeCase(
      root,
      'run',
      (out) => `source: { region: ${PRIMARY}, failoverRegion: ${FAILOVER} }
outputDir: ${out}
refresh: { interval: 1s, jitter: 0.1 }
secrets:
  run: { id: fo/run }
files:
  - { path: run, template: "{{ secrets.run }} {{ meta.run.region }}" }
server: { listen: "127.0.0.1:0" }
`,
    );
    primaryAnswers(unavailable);
    const agent = startAgent(['run', '--config', config], { env: env() });
    agents.push(agent);
    await agent.waitFor(/first render complete/, 60_000);
    assert.equal(await readFile(join(out, 'run'), 'utf8'), `replica-${CANARY} ${FAILOVER}`);
    const base = await serverUrl(agent);
    // Checks keep going to the primary first, then to the failover region, logged once.
    await waitUntil('a check served by the failover region', async () => {
      const m = /^secrets_agent_failover_total\{secret="run"\} (\d+)/m.exec(await (await fetch(`${base}/metrics`)).text());
      return Number(m?.[1] ?? 0) >= 2;
    }, 30_000, 200);
    const switched = agent.output().stderr.split('\n').filter((l) => l.includes('failed reading secret'));
    assert.equal(switched.length, 1, `logged once per switch:\n${switched.join('\n')}`);

    const recovered = proxy.requests.length;
    primaryAnswers(undefined);
    await agent.waitFor(new RegExp(`read from the primary region ${PRIMARY} again`), 30_000);
    // The primary answered the check (its own version differs from the replica made apart: the value is fetched there).
    await waitUntil('the primary value on disk', async () => (await readOr(join(out, 'run'))) === `primary-${CANARY} ${PRIMARY}`, 30_000);
    assert.ok(signedFor(PRIMARY, recovered).some((q) => q.operation === 'DescribeSecret'), 'the next check goes to the primary');

    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    const { stdout, stderr } = agent.output();
    assert.equal(stderr.split('\n').filter((l) => l.includes('failed reading secret')).length, 1);
    assert.ok(!stdout.includes(CANARY) && !stderr.includes(CANARY), 'canary leaked into the agent output');
  });
});
