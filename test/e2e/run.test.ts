// The sidecar end to end: the real CLI (`node agent/main.ts run`) beside a real
// app process, against moto behind a recording, fault-injecting proxy
// (test/support/proxy.ts). Signals, files, HTTP endpoints: all real.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { serverUrl, startAgent, type RunningAgent } from '../support/cli.ts';
import { readOr, waitUntil } from '../support/wait.ts';
import { agentEnv, type Moto } from '../support/moto.ts';
import { closeWorkspace, openWorkspace } from '../support/workspace.ts';
import { unavailable, type Proxy } from '../support/proxy.ts';


const CANARY = 'CANARY-run-51d0e2';

/** A small app that counts SIGHUPs: one line per signal in `hups`, its pid in `pid`. */
const APP = `
const fs = require('node:fs');
const [pidFile, hupFile] = process.argv.slice(1);
process.on('SIGHUP', () => fs.appendFileSync(hupFile, 'HUP\\n'));
fs.writeFileSync(pidFile, String(process.pid));
setInterval(() => {}, 1000);
`;

describe('run: the sidecar against moto', () => {
  let moto: Moto;
  let proxy: Proxy;
  let root: string;
  const agents: RunningAgent[] = [];
  const apps: ChildProcess[] = [];

  before(async () => {
    ({ moto, proxy, root } = await openWorkspace('sa-e2e-run-', { proxy: true }));
  });

  after(() => closeWorkspace({ moto, proxy, root }, [...agents, ...apps]));

  /** A fresh case: its own dir, secrets, config; the agent started on it. */
  async function setup(name: string, opts: { interval: string; secrets: Record<string, string>; files: string; notify?: string; extra?: string }) {
    const dir = join(root, name);
    const out = join(dir, 'out');
    await mkdir(dir, { recursive: true });
    const secretLines: string[] = [];
    for (const [local, value] of Object.entries(opts.secrets)) {
      const id = `${name}/${local}`;
      await moto.sm('CreateSecret', { Name: id, SecretString: value });
      secretLines.push(`  ${local}: { id: ${id} }`);
    }
    const configPath = join(dir, 'config.yaml');
    const config = `source: { region: us-east-1 }
outputDir: ${out}
refresh: { interval: ${opts.interval}, jitter: 0.1 }
secrets:
${secretLines.join('\n')}
files:
${opts.files}
notify:
${opts.notify ?? '  []'}
server: { listen: "127.0.0.1:0" }
${opts.extra ?? ''}`;
    await writeFile(configPath, config);
    const agent = startAgent(['run', '--config', configPath], { env: agentEnv({ url: proxy.url } as Moto, join(root, 'token')) });
    agents.push(agent);
    return { dir, out, configPath, config, agent };
  }

  function startApp(dir: string) {
    const pid = join(dir, 'app.pid');
    const hups = join(dir, 'hups');
    const app = spawn(process.execPath, ['-e', APP, pid, hups], { stdio: 'ignore' });
    apps.push(app);
    return { app, pid, hups, count: async () => (await readOr(hups)).split('\n').filter(Boolean).length };
  }

  it('when a secret is updated, the file changes within one interval + 1 s and the app gets exactly one SIGHUP', async () => {
    const dir = join(root, 'rotate');
    await mkdir(dir, { recursive: true });
    const app = startApp(dir);
    await waitUntil('app pid file', async () => (await readOr(app.pid)) !== '');
    const c = await setup('rotate', {
      interval: '1s',
      secrets: { db: JSON.stringify({ password: `one-${CANARY}` }) },
      files: '  - path: password\n    template: "{{ secrets.db.password }}"',
      notify: `  - signal: SIGHUP\n    pidFile: ${app.pid}`,
    });
    await c.agent.waitFor(/first render complete/);
    assert.equal(await readFile(join(c.out, 'password'), 'utf8'), `one-${CANARY}`);
    assert.equal(await app.count(), 0, 'no signal for the first render');
    const t0 = Date.now();
    await moto.sm('PutSecretValue', { SecretId: 'rotate/db', SecretString: JSON.stringify({ password: `two-${CANARY}` }) });
    await waitUntil('new password on disk', async () => (await readOr(join(c.out, 'password'))) === `two-${CANARY}`, 2200 + 1000);
    const latency = Date.now() - t0;
    await waitUntil('one SIGHUP', async () => (await app.count()) === 1, 3000);
    await sleep(2500); // two more intervals: still exactly one
    assert.equal(await app.count(), 1, 'exactly one SIGHUP for one rotation');
    process.stdout.write(`# rotation reached the file in ${latency} ms (interval 1s)\n`);
    c.agent.child.kill('SIGTERM');
    assert.equal((await c.agent.exited).code, 0);
    const { stdout, stderr } = c.agent.output();
    assert.ok(!stdout.includes(CANARY) && !stderr.includes(CANARY), 'canary leaked into the agent output');
  });

  it('when a reader reads a cert/key pair during rotations, it never sees a mixed pair', async () => {
    const pair = (n: number) => JSON.stringify({ cert: `CERT-${n}-${'c'.repeat(4000)}`, key: `KEY-${n}-${'k'.repeat(4000)}` });
    const c = await setup('pair', {
      interval: '200ms',
      secrets: { tls: pair(0) },
      files: '  - path: tls.crt\n    secret: tls\n    key: cert\n  - path: tls.key\n    secret: tls\n    key: key',
    });
    await c.agent.waitFor(/first render complete/);
    // The reader resolves ..data once per read and reads both files from that generation.
    const reader = spawn(
      process.execPath,
      [
        '-e',
        `const fs=require('fs'),p=require('path');const out=process.argv[1];let reads=0,mixed=0,gone=0;const end=Date.now()+Number(process.argv[2]);
         while(Date.now()<end){try{const g=fs.readlinkSync(p.join(out,'..data'));const c=fs.readFileSync(p.join(out,g,'tls.crt'),'utf8');const k=fs.readFileSync(p.join(out,g,'tls.key'),'utf8');
         reads++;if(c.split('-')[1]!==k.split('-')[1])mixed++;}catch(e){gone++;}}
         console.log(JSON.stringify({reads,mixed,gone}));`,
        c.out,
        '6000',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let readerOut = '';
    reader.stdout.on('data', (d: Buffer) => (readerOut += d.toString()));
    const readerDone = new Promise((r) => reader.on('exit', r));
    let rotations = 0;
    for (let n = 1; n <= 6; n++) {
      await moto.sm('PutSecretValue', { SecretId: 'pair/tls', SecretString: pair(n) });
      await waitUntil(`generation ${n}`, async () => (await readOr(join(c.out, 'tls.key'))).startsWith(`KEY-${n}-`), 5000);
      rotations++;
    }
    await readerDone;
    const stats = JSON.parse(readerOut) as { reads: number; mixed: number; gone: number };
    process.stdout.write(`# pair reader: ${JSON.stringify(stats)} over ${rotations} rotations\n`);
    assert.equal(rotations, 6);
    assert.ok(stats.reads > 100, 'the reader actually read');
    assert.equal(stats.mixed, 0, 'a mixed cert/key pair was seen');
    c.agent.child.kill('SIGTERM');
    await c.agent.exited;
  });

  it('when nothing changes for several intervals, it calls only DescribeSecret, never GetSecretValue', async () => {
    const c = await setup('quiet', {
      interval: '300ms',
      secrets: { a: 'a', b: 'b', c: 'c' },
      files: '  - path: all\n    template: "{{ raw.a }}{{ raw.b }}{{ raw.c }}"',
    });
    await c.agent.waitFor(/first render complete/);
    await sleep(500);
    const since = Date.now();
    await sleep(2500);
    const describes = proxy.count('DescribeSecret', since);
    const gets = proxy.count('GetSecretValue', since) + proxy.count('BatchGetSecretValue', since);
    process.stdout.write(`# quiet period: ${describes} DescribeSecret, ${gets} GetSecretValue/Batch in 2.5 s\n`);
    assert.ok(describes >= 3 * 5, `expected regular checks, saw ${describes}`);
    assert.equal(gets, 0);
    c.agent.child.kill('SIGTERM');
    await c.agent.exited;
  });

  it('when rotation is scheduled (NextRotationDate), the new version arrives within seconds even with a 1 h interval', async () => {
    // moto 5.2 reports neither RotationEnabled: true nor NextRotationDate: the proxy adds them.
    const next = Math.floor(Date.now() / 1000) + 4;
    proxy.transform = (op, body) =>
      op === 'DescribeSecret' && String(body.Name).startsWith('sched/') ? { ...body, RotationEnabled: true, NextRotationDate: next } : body;
    try {
      const c = await setup('sched', {
        interval: '1h',
        secrets: { k: 'before' },
        files: '  - path: k\n    secret: k',
      });
      await c.agent.waitFor(/first render complete/);
      // The first regular check is ~1 h away. With rotationAware the agent makes one early metadata
      // check after start (within 30 s, here sooner) to learn the rotation date, then checks just after it.
      await waitUntil('the rotation date', () => Date.now() >= next * 1000, 10_000);
      await moto.sm('PutSecretValue', { SecretId: 'sched/k', SecretString: 'after' });
      const t = Date.now();
      await waitUntil('rotated value', async () => (await readOr(join(c.out, 'k'))) === 'after', 20_000);
      process.stdout.write(`# scheduled rotation picked up ${Date.now() - t} ms after the new version appeared\n`);
      c.agent.child.kill('SIGTERM');
      await c.agent.exited;
    } finally {
      proxy.transform = undefined;
    }
  });

  it('when the endpoint is down for several intervals, files stay, /readyz stays 200, and it recovers within an interval', async () => {
    const c = await setup('outage', { interval: '500ms', secrets: { s: 'v1' }, files: '  - path: s\n    secret: s' });
    const base = await serverUrl(c.agent);
    await c.agent.waitFor(/first render complete/);
    const gen = await readlink(join(c.out, '..data'));
    proxy.fault = (op) => (op === 'DescribeSecret' || op === 'GetSecretValue' ? unavailable : undefined);
    try {
      await moto.sm('PutSecretValue', { SecretId: 'outage/s', SecretString: 'v2' });
      for (let i = 0; i < 6; i++) {
        await sleep(500);
        assert.equal((await fetch(`${base}/readyz`)).status, 200);
        assert.equal(await readFile(join(c.out, 's'), 'utf8'), 'v1');
        assert.equal(await readlink(join(c.out, '..data')), gen);
      }
    } finally {
      proxy.fault = undefined;
    }
    const t = Date.now();
    await waitUntil('recovery', async () => (await readOr(join(c.out, 's'))) === 'v2', 500 + 1000);
    process.stdout.write(`# recovered ${Date.now() - t} ms after the outage ended\n`);
    c.agent.child.kill('SIGTERM');
    await c.agent.exited;
  });

  it('when the config is edited, a valid edit is applied live and an invalid one is rejected', async () => {
    const c = await setup('reload', { interval: '300ms', secrets: { s: 'value' }, files: '  - path: f\n    template: "A={{ raw.s }}"' });
    await c.agent.waitFor(/first render complete/);
    assert.equal(await readFile(join(c.out, 'f'), 'utf8'), 'A=value');
    await writeFile(c.configPath, c.config.replace('A={{ raw.s }}', 'B={{ raw.s }}'));
    await waitUntil('live edit applied', async () => (await readOr(join(c.out, 'f'))) === 'B=value', 10_000);
    await writeFile(c.configPath, c.config.replace('A={{ raw.s }}', 'C={{ raw.s ').replace('refresh:', 'refresh_typo:'));
    await c.agent.waitFor(/config change rejected/, 10_000);
    // The old config keeps working: a secret update still propagates with the B template.
    await moto.sm('PutSecretValue', { SecretId: 'reload/s', SecretString: 'next' });
    await waitUntil('old config still refreshing', async () => (await readOr(join(c.out, 'f'))) === 'B=next', 10_000);
    c.agent.child.kill('SIGTERM');
    assert.equal((await c.agent.exited).code, 0);
  });

  it('when SIGTERM arrives, it exits 0 within 5 s and leaves exactly one complete generation', async () => {
    const c = await setup('term', { interval: '100ms', secrets: { s: 'x'.repeat(100_000) }, files: '  - path: s\n    secret: s' });
    await c.agent.waitFor(/first render complete/);
    // Keep it writing: rotate continuously, then stop it in the middle.
    let n = 0;
    const stopAt = Date.now() + 1500;
    while (Date.now() < stopAt) await moto.sm('PutSecretValue', { SecretId: 'term/s', SecretString: `${n++}`.padEnd(100_000, 'y') });
    const t = Date.now();
    c.agent.child.kill('SIGTERM');
    const { code } = await c.agent.exited;
    const took = Date.now() - t;
    process.stdout.write(`# SIGTERM -> exit ${code} in ${took} ms\n`);
    assert.equal(code, 0);
    assert.ok(took < 5000, `exit took ${took} ms`);
    const reserved = (await readdir(c.out)).filter((e) => e.startsWith('..'));
    assert.equal(reserved.length, 2, `expected ..data and one generation, found ${reserved.join(', ')}`);
    const gen = await readlink(join(c.out, '..data'));
    assert.ok(reserved.includes(gen));
    assert.equal((await readFile(join(c.out, 's'), 'utf8')).length, 100_000);
  });
});
