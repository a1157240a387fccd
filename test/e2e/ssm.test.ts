// SSM Parameter Store beside Secrets Manager, end to end: the real CLI against
// moto (which serves SSM on the same port) behind the recording proxy
// (test/support/proxy.ts), so every SSM request is seen and counted by its
// x-amz-target and body. Files, signals, processes: all real.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { closeWorkspace, openWorkspace, writeCase } from '../support/workspace.ts';
import { type Proxy, type Recorded } from '../support/proxy.ts';
import { readOr, waitUntil } from '../support/wait.ts';
import { createSource } from '../../agent/source/index.ts';
import { createLogger } from '../../agent/observe/log.ts';
import type { AgentConfig, SecretSpec } from '../../agent/types.ts';

const CANARY = 'CANARY-ssm-7c2e94';

const APP = `
const fs = require('node:fs');
const [pidFile, hupFile] = process.argv.slice(1);
process.on('SIGHUP', () => fs.appendFileSync(hupFile, 'HUP\\n'));
fs.writeFileSync(pidFile, String(process.pid));
setInterval(() => {}, 1000);
`;

function ssmRequest(r: Recorded): { op: string; decrypt: boolean; names: string[] } | undefined {
  const target = r.headers['x-amz-target'];
  if (typeof target !== 'string' || !target.startsWith('AmazonSSM.')) return undefined;
  const body = JSON.parse(r.body || '{}') as { WithDecryption?: boolean; Names?: string[]; Path?: string };
  return { op: target.slice('AmazonSSM.'.length), decrypt: body.WithDecryption === true, names: body.Names ?? (body.Path ? [body.Path] : []) };
}

describe('SSM Parameter Store: init and run against moto', () => {
  let moto: Moto;
  let proxy: Proxy;
  let root: string;
  const agents: RunningAgent[] = [];
  const apps: ChildProcess[] = [];

  before(async () => {
    ({ moto, proxy, root } = await openWorkspace('sa-e2e-ssm-', { proxy: true }));
  });

  after(() => closeWorkspace({ moto, proxy, root }, [...agents, ...apps]));

  const env = (): NodeJS.ProcessEnv => agentEnv({ url: proxy.url } as Moto, join(root, 'token'));

  it('when init reads SecureString, String, StringList, a pinned version, a label and a path beside a Secrets Manager secret, every file has the exact bytes', async () => {
    await moto.ssm('PutParameter', { Name: '/init/app/db/password', Value: `pw-${CANARY}`, Type: 'SecureString' });
    await moto.ssm('PutParameter', { Name: '/init/app/user', Value: 'admin', Type: 'String' });
    await moto.ssm('PutParameter', { Name: '/init/flags', Value: 'a,b', Type: 'StringList' });
    await moto.ssm('PutParameter', { Name: '/init/flags', Value: 'a,b,c', Type: 'StringList', Overwrite: true });
    await moto.ssm('LabelParameterVersion', { Name: '/init/flags', ParameterVersion: 1, Labels: ['live'] });
    await moto.ssm('PutParameter', { Name: '/init/json', Value: JSON.stringify({ k: `v-${CANARY}` }), Type: 'SecureString' });
    await moto.sm('CreateSecret', { Name: 'init/db', SecretString: JSON.stringify({ password: `sm-${CANARY}` }) });
    const { out, config } = await writeCase(
      root,
      'init',
      (out) => `source: { region: us-east-1 }
outputDir: ${out}
secrets:
  pw:     { parameter: /init/app/db/password }
  user:   { parameter: /init/app/user }
  flags:  { parameter: /init/flags }
  pinned: { parameter: /init/flags, version: 1 }
  live:   { parameter: /init/flags, label: live }
  json:   { parameter: /init/json }
  app:    { parameterPath: /init/app/ }
  db:     { id: init/db }
files:
  - path: all.txt
    template: |
      pw={{ secrets.pw }}
      user={{ secrets.user }} {{ meta.user.type }} v{{ meta.user.version }}
      flags={{ secrets.flags }} {{ secrets.flags | split: "," | join: "|" }} {{ meta.flags.type }} v{{ meta.flags.version }}
      pinned={{ secrets.pinned }} v{{ meta.pinned.version }}
      live={{ secrets.live }} v{{ meta.live.version }} {{ meta.live.labels | join: "," }}
      json={{ secrets.json.k }} {{ meta.json.type }}
      app={{ secrets.app['db/password'] }} {{ secrets.app.user }} {{ meta.app.parameters['db/password'].type }}
      db={{ secrets.db.password }}
  - { path: pw, secret: pw }
  - { path: app-pw, secret: app, key: db/password }
  - { path: app.json, template: "{{ raw.app }}" }
`,
    );
    const since = proxy.requests.length;
    const r = await runAgent(['init', '--config', config], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      await readFile(join(out, 'all.txt'), 'utf8'),
      `pw=pw-${CANARY}
user=admin String v1
flags=a,b,c a|b|c StringList v2
pinned=a,b v1
live=a,b v1 live
json=v-${CANARY} SecureString
app=pw-${CANARY} admin SecureString
db=sm-${CANARY}
`,
    );
    assert.equal(await readFile(join(out, 'pw'), 'utf8'), `pw-${CANARY}`);
    assert.equal(await readFile(join(out, 'app-pw'), 'utf8'), `pw-${CANARY}`);
    assert.equal(await readFile(join(out, 'app.json'), 'utf8'), JSON.stringify({ 'db/password': `pw-${CANARY}`, user: 'admin' }));
    // Six selectors, three of one parameter (never two in one request): three GetParameters; the path in one page.
    const calls = proxy.requests.slice(since).map(ssmRequest).filter((x) => x !== undefined);
    assert.equal(calls.filter((c) => c.op === 'GetParameters').length, 3, JSON.stringify(calls));
    assert.equal(calls.filter((c) => c.op === 'GetParametersByPath').length, 1, JSON.stringify(calls));
    assert.ok(calls.every((c) => c.decrypt), 'the first load decrypts');
    assert.ok(!r.stdout.includes(CANARY) && !r.stderr.includes(CANARY), 'canary leaked into the agent output');
  });

  it('when a parameter is missing, init fails naming it, with the ParameterNotFound code', async () => {
    await moto.ssm('PutParameter', { Name: '/missing/there', Value: `x-${CANARY}`, Type: 'SecureString' });
    const dir = join(root, 'missing');
    await mkdir(dir, { recursive: true });
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `source: { region: us-east-1 }\noutputDir: ${join(dir, 'out')}\nsecrets:\n  there: { parameter: /missing/there }\n  gone: { parameter: /missing/gone }\n  old: { parameter: /missing/there, version: 9 }\nfiles:\n  - { path: a, template: "{{ secrets.there }}{{ secrets.gone }}{{ secrets.old }}" }\n`,
    );
    const r = await runAgent(['init', '--config', config, '--timeout', '3s'], { env: env() });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\/missing\/gone/);
    assert.match(r.stderr, /\/missing\/there:9/);
    assert.match(r.stderr, /ParameterNotFound/);
    assert.ok(!r.stdout.includes(CANARY) && !r.stderr.includes(CANARY), 'canary leaked into the agent output');
  });

  it('when 12 parameters and a path are checked together (describeMany), it takes ceil(12/10) GetParameters and one path page, none decrypting', async () => {
    for (let i = 1; i <= 12; i++) await moto.ssm('PutParameter', { Name: `/many/p${i}`, Value: `m-${i}-${CANARY}`, Type: 'SecureString' });
    await moto.ssm('PutParameter', { Name: '/many/dir/x', Value: `x-${CANARY}`, Type: 'SecureString' });
    const specs: SecretSpec[] = [
      ...Array.from({ length: 12 }, (_, k): SecretSpec => ({ name: `p${k + 1}`, kind: 'parameter', id: `/many/p${k + 1}` })),
      { name: 'dir', kind: 'parameterPath', id: '/many/dir/' },
      { name: 'gone', kind: 'parameter', id: '/many/gone' },
    ];
    const saved = { ...process.env };
    Object.assign(process.env, { AWS_ENDPOINT_URL: proxy.url, AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'x', AWS_REGION: 'us-east-1' });
    const config = { source: { type: 'aws', region: 'us-east-1' }, refresh: {}, secrets: specs } as unknown as AgentConfig;
    const source = await createSource(config, createLogger({ level: 'error', format: 'json' }));
    try {
      const since = proxy.requests.length;
      const got = await source.describeMany!(specs);
      const calls = proxy.requests.slice(since).map(ssmRequest).filter((x) => x !== undefined);
      assert.equal(calls.filter((c) => c.op === 'GetParameters').length, 2, JSON.stringify(calls));
      assert.equal(calls.filter((c) => c.op === 'GetParametersByPath').length, 1, JSON.stringify(calls));
      assert.deepEqual(calls.filter((c) => c.decrypt), []);
      for (let i = 1; i <= 12; i++) {
        const m = got.get(`p${i}`);
        assert.ok(m && !(m instanceof Error) && m.versionIdForStage === '1', `p${i}: ${JSON.stringify(m)}`);
      }
      const dir = got.get('dir');
      assert.ok(dir && !(dir instanceof Error) && dir.versionIdForStage?.startsWith('path-'));
      const gone = got.get('gone');
      assert.ok(gone instanceof Error && /ParameterNotFound/.test(gone.message) && /\/many\/gone/.test(gone.message), JSON.stringify(gone));
      // A parameter added under the path moves the path's version; the per-spec check agrees with describeMany.
      await moto.ssm('PutParameter', { Name: '/many/dir/y', Value: 'y', Type: 'String' });
      const after = await source.describe(specs[12]!);
      assert.notEqual(after.versionIdForStage, (dir as { versionIdForStage?: string }).versionIdForStage);
    } finally {
      source.close();
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  it('when validate sees a bad parameter key, it exits 2 with file:line', async () => {
    const dir = join(root, 'validate');
    await mkdir(dir, { recursive: true });
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `outputDir: /out\nsecrets:\n  a: { parameter: prod/app }\n  b: { parameter: /x, label: live, version: 2 }\n  c: { parameter: /ssm/db }\n  d: { parameterPath: /AWS/ }\n  e: { parameter: awsDb }\n  f: { parameter: /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64 }\n  g: { parameter: /aws/reference/secretsmanager/prod/db }\nfiles:\n  - { path: a, secret: a }\n`,
    );
    const r = await runAgent(['validate', '--config', config, '--log-format', 'text'], { env: env() });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /config\.yaml:3: secrets\.a\.parameter: "prod\/app": a name with levels/);
    assert.match(r.stderr, /config\.yaml:4: secrets\.b\.label: version and label are mutually exclusive/);
    // Reserved by Parameter Store (no account's parameter can be named so): refused before any request, not retried at run time.
    assert.match(r.stderr, /config\.yaml:5: secrets\.c\.parameter: "\/ssm\/db": Parameter Store reserves names whose first level starts with "aws" or "ssm"/);
    assert.match(r.stderr, /config\.yaml:6: secrets\.d\.parameterPath: "\/AWS\/": Parameter Store reserves/);
    assert.match(r.stderr, /config\.yaml:7: secrets\.e\.parameter: "awsDb": Parameter Store reserves/);
    // AWS's own parameters can be read: public parameters and Secrets Manager references.
    assert.doesNotMatch(r.stderr, /secrets\.[fg]\./);
  });

  it('when run checks parameters, quiet checks never decrypt; an overwrite reaches its file within interval + 1 s with one SIGHUP; a parameter added under a path appears', async () => {
    for (let i = 1; i <= 12; i++) {
      await moto.ssm('PutParameter', { Name: `/run/p${i}`, Value: `v1-${i}-${CANARY}`, Type: i % 2 ? 'SecureString' : 'String' });
    }
    await moto.ssm('PutParameter', { Name: '/run/dir/a', Value: `a-${CANARY}`, Type: 'SecureString' });
    const dir = join(root, 'run');
    const out = join(dir, 'out');
    await mkdir(dir, { recursive: true });
    const pid = join(dir, 'app.pid');
    const hups = join(dir, 'hups');
    apps.push(spawn(process.execPath, ['-e', APP, pid, hups], { stdio: 'ignore' }));
    await waitUntil('app pid file', async () => (await readOr(pid)) !== '');
    const count = async (): Promise<number> => (await readOr(hups)).split('\n').filter(Boolean).length;
    const secrets = Array.from({ length: 12 }, (_, k) => `  p${k + 1}: { parameter: /run/p${k + 1} }`).join('\n');
    const config = join(dir, 'config.yaml');
    await writeFile(
      config,
      `source: { region: us-east-1 }
outputDir: ${out}
refresh: { interval: 1s, jitter: 0.1 }
secrets:
${secrets}
  dir: { parameterPath: /run/dir }
files:
  - { path: p1, secret: p1 }
  - { path: dir.json, template: "{{ raw.dir }}" }
notify:
  - signal: SIGHUP
    pidFile: ${pid}
server: { listen: "" }
`,
    );
    const agent = startAgent(['run', '--config', config], { env: env() });
    agents.push(agent);
    await agent.waitFor(/first render complete/);
    assert.equal(await readFile(join(out, 'p1'), 'utf8'), `v1-1-${CANARY}`);

    // Quiet: three intervals of checks, none decrypting.
    const quiet = proxy.requests.length;
    await sleep(3000);
    const checks = proxy.requests.slice(quiet).map(ssmRequest).filter((x) => x !== undefined);
    // Every parameter checked (in rounds, 10 names a call: test/e2e/check-rounds.test.ts counts the calls).
    const checked = new Set(checks.filter((c) => c.op === 'GetParameters').flatMap((c) => c.names));
    assert.equal(checked.size, 12, `expected the 12 parameters checked: ${checks.length} calls, ${[...checked].join(',')}`);
    assert.ok(checks.some((c) => c.op === 'GetParametersByPath'), 'the path is checked');
    assert.deepEqual(checks.filter((c) => c.decrypt), [], 'a check never decrypts');
    assert.equal(await count(), 0, 'no signal without a change');

    // An overwrite: only that parameter is fetched with decryption.
    const moved = proxy.requests.length;
    const t0 = Date.now();
    await moto.ssm('PutParameter', { Name: '/run/p1', Value: `v2-1-${CANARY}`, Type: 'SecureString', Overwrite: true });
    await waitUntil('new p1 on disk', async () => (await readOr(join(out, 'p1'))) === `v2-1-${CANARY}`, 1100 + 1000 + 1000);
    const latency = Date.now() - t0;
    await waitUntil('one SIGHUP', async () => (await count()) === 1, 3000);
    const decrypting = proxy.requests.slice(moved).map(ssmRequest).filter((c) => c?.decrypt);
    assert.deepEqual(decrypting, [{ op: 'GetParameters', decrypt: true, names: ['/run/p1'] }]);
    process.stdout.write(`# parameter overwrite reached the file in ${latency} ms (interval 1s)\n`);

    // A parameter added under the path.
    await moto.ssm('PutParameter', { Name: '/run/dir/sub/b', Value: `b-${CANARY}`, Type: 'String' });
    const want = JSON.stringify({ a: `a-${CANARY}`, 'sub/b': `b-${CANARY}` });
    await waitUntil('new path entry on disk', async () => (await readOr(join(out, 'dir.json'))) === want, 5000);
    await waitUntil('second SIGHUP', async () => (await count()) === 2, 3000);
    await sleep(2500);
    assert.equal(await count(), 2, 'one SIGHUP per change');

    agent.child.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    const { stdout, stderr } = agent.output();
    assert.ok(!stdout.includes(CANARY) && !stderr.includes(CANARY), 'canary leaked into the agent output');
  });
});
