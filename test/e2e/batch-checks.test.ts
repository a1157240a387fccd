// refresh.batchChecks end to end: the real CLI (`run`) against moto behind the
// recording, fault-injecting proxy (test/support/proxy.ts), which counts every
// ListSecrets, DescribeSecret and GetSecretValue the agent sends. Also the
// source on its own: ListSecrets' metadata is the metadata DescribeSecret gives.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../agent/observe/log.ts';
import { AwsSource } from '../../agent/source/aws.ts';
import { startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, MOTO_ACCOUNT, type Moto } from '../support/moto.ts';
import { closeWorkspace, openWorkspace } from '../support/workspace.ts';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { readOr, waitUntil } from '../support/wait.ts';

const CANARY = 'CANARY-batch-7c3e19';
const INTERVAL_MS = 1000;
const accessDenied = {
  kind: 'status' as const,
  status: 400,
  body: JSON.stringify({ __type: 'AccessDeniedException', message: 'not authorized to perform secretsmanager:ListSecrets' }),
  headers: { 'content-type': 'application/x-amz-json-1.1' },
};

describe('refresh.batchChecks: checks through ListSecrets', () => {
  let moto: Moto;
  let root: string;
  const agents: RunningAgent[] = [];
  const proxies: Proxy[] = [];

  before(async () => {
    ({ moto, root } = await openWorkspace('sa-e2e-batch-'));
  });

  after(() => closeWorkspace({ moto, root }, agents, proxies));

  /** Ten secrets `<name>/s0` … `<name>/s9` (s1 is a prefix of s10-like decoys), one file each; the agent started on them. */
  async function setup(name: string, batchChecks: boolean) {
    const dir = join(root, name);
    const out = join(dir, 'out');
    await mkdir(dir, { recursive: true });
    const lines: string[] = [];
    const files: string[] = [];
    for (let i = 0; i < 10; i++) {
      await moto.sm('CreateSecret', { Name: `${name}/s${i}`, SecretString: `v1-${i}-${CANARY}` });
      lines.push(`  s${i}: { id: ${name}/s${i} }`);
      files.push(`  - { path: s${i}, secret: s${i} }`);
    }
    // Not configured, but matched by the prefix filter "…/s1": the agent must pick exact names.
    await moto.sm('CreateSecret', { Name: `${name}/s1-decoy`, SecretString: `decoy-${CANARY}` });
    const proxy = await startProxy(moto.url);
    proxies.push(proxy);
    const configPath = join(dir, 'config.yaml');
    await writeFile(
      configPath,
      `source: { region: us-east-1 }
outputDir: ${out}
refresh: { interval: ${INTERVAL_MS}ms, jitter: 0, rotationAware: false, batchChecks: ${batchChecks} }
secrets:
${lines.join('\n')}
files:
${files.join('\n')}
server: { listen: "127.0.0.1:0" }
`,
    );
    const agent = startAgent(['run', '--config', configPath], { env: agentEnv({ url: proxy.url } as Moto, join(root, 'token')) });
    agents.push(agent);
    return { out, proxy, agent };
  }

  const filterValues = (body: string): string[] => {
    const req = JSON.parse(body) as { Filters?: { Key: string; Values: string[] }[] };
    return req.Filters?.find((f) => f.Key === 'name')?.Values ?? [];
  };

  it('10 secrets are checked by one ListSecrets per round and no DescribeSecret; a version move fetches only that secret and reaches its file', async () => {
    const { out, proxy, agent } = await setup('batch', true);
    await agent.waitFor(/first render complete/);
    // A few rounds of quiet.
    await waitUntil('three check rounds', () => proxy.count('ListSecrets') >= 3, 20_000);
    const since = Date.now();
    await waitUntil('three more rounds', () => proxy.count('ListSecrets', since) >= 3, 20_000);
    const elapsed = Date.now() - since;
    const lists = proxy.requests.filter((r) => r.operation === 'ListSecrets' && r.at >= since);
    process.stdout.write(`# batchChecks, 10 secrets: ${lists.length} ListSecrets, ${proxy.count('DescribeSecret')} DescribeSecret in ${elapsed} ms\n`);
    assert.equal(proxy.count('DescribeSecret'), 0, 'no DescribeSecret at all');
    assert.equal(proxy.count('GetSecretValue', since), 0, 'nothing fetched while nothing moved');
    for (const l of lists) assert.equal(filterValues(l.body).length, 10, `one ListSecrets for all ten: ${l.body}`);
    assert.ok(lists.length <= Math.ceil(elapsed / INTERVAL_MS) + 1, `about one ListSecrets per interval: ${lists.length} in ${elapsed} ms`);

    // A new version of one secret: found by the list, fetched alone, on disk.
    const moved = Date.now();
    await moto.sm('PutSecretValue', { SecretId: 'batch/s3', SecretString: `v2-3-${CANARY}` });
    await waitUntil('the new value on disk', async () => (await readOr(join(out, 's3'))) === `v2-3-${CANARY}`, INTERVAL_MS + 5000);
    await sleep(INTERVAL_MS * 2); // two more rounds: nothing else fetched
    const gets = proxy.requests.filter((r) => r.operation === 'GetSecretValue' && r.at >= moved);
    assert.deepEqual(
      gets.map((r) => (JSON.parse(r.body) as { SecretId: string }).SecretId),
      ['batch/s3'],
      'exactly one GetSecretValue, for the secret that moved',
    );
    assert.equal(proxy.count('DescribeSecret'), 0);
    assert.equal(await readFile(join(out, 's1'), 'utf8'), `v1-1-${CANARY}`, 'the decoy never stood in for s1');
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    const { stdout, stderr } = agent.output();
    assert.ok(!stdout.includes(CANARY) && !stderr.includes(CANARY), 'canary leaked into the agent output');
  });

  it('when ListSecrets is refused (AccessDenied), it falls back to DescribeSecret per secret, logged once, and stops asking', async () => {
    const { out, proxy, agent } = await setup('denied', true);
    proxy.fault = (op) => (op === 'ListSecrets' ? accessDenied : undefined);
    await agent.waitFor(/first render complete/);
    await waitUntil('three rounds of DescribeSecret', () => proxy.count('DescribeSecret') >= 30, 20_000);
    const moved = Date.now();
    await moto.sm('PutSecretValue', { SecretId: 'denied/s7', SecretString: `v2-7-${CANARY}` });
    await waitUntil('the new value on disk', async () => (await readOr(join(out, 's7'))) === `v2-7-${CANARY}`, INTERVAL_MS + 5000);
    assert.equal(proxy.count('ListSecrets'), 1, 'ListSecrets asked once, then never again');
    assert.equal(proxy.count('GetSecretValue', moved), 1);
    const { stdout, stderr } = agent.output();
    const refused = (stdout + stderr).split('\n').filter((l) => l.includes('ListSecrets refused'));
    assert.equal(refused.length, 1, `logged once:\n${refused.join('\n')}`);
    assert.match(refused[0] as string, /secretsmanager:ListSecrets/);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  it('without batchChecks, checks stay one DescribeSecret per secret and ListSecrets is never called', async () => {
    const { proxy, agent } = await setup('plain', false);
    await agent.waitFor(/first render complete/);
    await waitUntil('two rounds of DescribeSecret', () => proxy.count('DescribeSecret') >= 20, 20_000);
    assert.equal(proxy.count('ListSecrets'), 0);
    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
  });

  /** describeMany on a source of its own behind a fresh recording proxy, with a capturing logger. */
  async function withSource<T>(body: (source: AwsSource, proxy: Proxy, lines: string[]) => Promise<T>): Promise<T> {
    const proxy = await startProxy(moto.url);
    proxies.push(proxy);
    const saved = { ...process.env };
    Object.assign(process.env, agentEnv({ url: proxy.url } as Moto, join(root, 'token')));
    const lines: string[] = [];
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const log = createLogger({ level: 'info', destination: out });
    const source = new AwsSource([], { region: 'us-east-1', log, batchChecks: true });
    try {
      return await body(source, proxy, lines);
    } finally {
      source.close();
      process.env = saved;
    }
  }

  it('the source: 25 secrets under one path are checked by one ListSecrets of the path, not three of their names; what is not configured under it is ignored', async () => {
    const ids = Array.from({ length: 25 }, (_, i) => `folder/app/s${String(i).padStart(2, '0')}`);
    for (const id of ids) await moto.sm('CreateSecret', { Name: id, SecretString: `v1-${CANARY}` });
    await moto.sm('PutSecretValue', { SecretId: 'folder/app/s07', SecretString: `v2-${CANARY}` });
    await moto.sm('CreateSecret', { Name: 'folder/app/not-mine', SecretString: 'x' });
    await moto.sm('CreateSecret', { Name: 'folder/app-other/s00', SecretString: 'x' });
    await withSource(async (source, proxy) => {
      const specs = ids.map((id, i) => ({ name: `s${i}`, id, versionStage: 'AWSCURRENT' }));
      const many = await source.describeMany!(specs);
      const lists = proxy.requests.filter((r) => r.operation === 'ListSecrets');
      assert.deepEqual(lists.map((l) => filterValues(l.body)), [['folder/app/']], 'one ListSecrets, of the path');
      assert.equal(proxy.count('DescribeSecret'), 0);
      assert.equal(many.size, 25);
      for (const spec of [specs[0]!, specs[7]!, specs[24]!]) assert.deepEqual(many.get(spec.name), await source.describe(spec), spec.name);
      const s7 = many.get('s7');
      assert.ok(s7 && !(s7 instanceof Error));
      assert.equal(s7.name, 'folder/app/s07', 'each secret its own entry');
    });
  });

  it('the source: a path that holds many other secrets is read once, found sparse (logged once) and its secrets listed by name from then on', async () => {
    // 120 secrets not configured under the path, created first (ListSecrets pages come in creation order here),
    // then the 20 configured ones: their path would take 2 pages, and 20 names are worth 1 (half their 2 calls by name).
    for (let i = 0; i < 120; i++) await moto.sm('CreateSecret', { Name: `crowded/x${String(i).padStart(3, '0')}`, SecretString: 'x' });
    const ids = Array.from({ length: 20 }, (_, i) => `crowded/mine${String(i).padStart(2, '0')}`);
    for (const id of ids) await moto.sm('CreateSecret', { Name: id, SecretString: `v1-${CANARY}` });
    await withSource(async (source, proxy, lines) => {
      const specs = ids.map((id, i) => ({ name: `m${i}`, id, versionStage: 'AWSCURRENT' }));
      for (let round = 1; round <= 2; round++) {
        const since = proxy.requests.length;
        const many = await source.describeMany!(specs);
        const lists = proxy.requests.slice(since).filter((r) => r.operation === 'ListSecrets').map((l) => filterValues(l.body));
        assert.deepEqual(
          lists.map((v) => (v.length === 1 && v[0] === 'crowded/' ? 'path' : `${v.length} names`)),
          round === 1 ? ['path', '10 names', '10 names'] : ['10 names', '10 names'],
          `round ${round}: ${JSON.stringify(lists)}`,
        );
        assert.equal(proxy.requests.slice(since).filter((r) => r.operation === 'DescribeSecret').length, 0, `round ${round}: no DescribeSecret`);
        for (const spec of [specs[0]!, specs[19]!]) assert.deepEqual(many.get(spec.name), await source.describe(spec), `round ${round}: ${spec.name}`);
        assert.equal([...many.values()].filter((m) => !(m instanceof Error)).length, 20, `round ${round}: all 20 answered`);
      }
      const sparse = lines.filter((l) => l.includes('listing these secrets by name from now on'));
      assert.equal(sparse.length, 1, lines.join(''));
      assert.match(sparse[0]!, /crowded\//);
      assert.ok(!lines.join('').includes(CANARY));
    });
  });

  it('the source: describeMany gives what describe gives (versions, stage, deletion), by name and by ARN; another account\'s ARN is described', async () => {
    await withSource(async (source, proxy) => {
      const a = await moto.sm<{ ARN: string }>('CreateSecret', { Name: 'src/a', SecretString: 'a' });
      await moto.sm('CreateSecret', { Name: 'src/a-longer', SecretString: 'x' });
      await moto.sm('CreateSecret', { Name: 'src/gone', SecretString: 'g' });
      await moto.sm('PutSecretValue', { SecretId: 'src/a', SecretString: 'a2' });
      await moto.sm('DeleteSecret', { SecretId: 'src/gone', RecoveryWindowInDays: 7 });
      const other = `arn:aws:secretsmanager:us-east-1:${MOTO_ACCOUNT.replace(/./g, '1')}:secret:src/a-AbCdEf`;
      const specs = [
        { name: 'byName', id: 'src/a', versionStage: 'AWSCURRENT' },
        { name: 'previous', id: 'src/a', versionStage: 'AWSPREVIOUS' },
        { name: 'byArn', id: a.ARN, versionStage: 'AWSCURRENT' },
        { name: 'gone', id: 'src/gone', versionStage: 'AWSCURRENT' },
        { name: 'foreign', id: other, versionStage: 'AWSCURRENT' },
      ];
      const many = await source.describeMany!(specs);
      for (const spec of specs.slice(0, 4)) {
        assert.deepEqual(many.get(spec.name), await source.describe(spec), spec.name);
      }
      const gone = many.get('gone');
      assert.ok(gone && !(gone instanceof Error) && gone.deleted && gone.deletedDate instanceof Date, 'scheduled deletion seen');
      assert.ok(many.get('foreign') instanceof Error, 'another account: DescribeSecret, and its error');
      const lists = proxy.requests.filter((r) => r.operation === 'ListSecrets');
      assert.equal(lists.length, 1);
      assert.deepEqual(filterValues(lists[0]!.body).sort(), ['src/a', 'src/gone'], 'one filter value per distinct name');
      assert.equal(proxy.count('DescribeSecret'), 4 + 1, 'the foreign ARN once, plus the four comparisons');
    });
  });
});
