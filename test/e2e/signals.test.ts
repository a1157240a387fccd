// Signals (docs/commands.md, Signals), sent for real to the real CLI: the image's
// ENTRYPOINT and every example `command`, parsed from the Dockerfile and
// k8s-examples and run on the bundle; the source without any flag; `init` and
// `run`; notify commands that ignore SIGTERM or leave a grandchild behind.
// Everything runs on the local `file` source: no AWS, except the SIGHUP check
// of every secret, which needs a source that does not announce its own changes (moto).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAIN, REPO, startAgent, type RunningAgent } from '../support/cli.ts';
import { entrypointFlags, exampleAgentContainers } from '../support/dockerfile.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { readOr, waitUntil } from '../support/wait.ts';

let root: string;
const agents = new Set<RunningAgent>();
/** Process groups the tests made (notify commands), SIGKILLed at the end if anything of them is left. */
const groups = new Set<number>();

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sa-signals-'));
});

after(async () => {
  for (const a of agents) {
    if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    await a.exited;
  }
  for (const g of groups) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
  await waitUntil('the notify commands to be gone', async () => (await Promise.all([...groups].map(groupMembers))).every((m) => m.length === 0), 10_000);
  if (root) await rm(root, { recursive: true, force: true });
});

/** Start the agent (`node <nodeFlags> <entry> <args>`), remembered for teardown. */
function start(args: string[], options: { entry?: string; nodeFlags?: string[]; env?: NodeJS.ProcessEnv } = {}): RunningAgent {
  const agent = startAgent(args, options);
  agents.add(agent);
  return agent;
}

/** The agent's exit, or a failure if it has not exited within `ms` (a hang must fail, not stall the suite). */
async function exitOf(agent: RunningAgent, ms = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the agent did not exit within ${ms} ms:\n${agent.output().stderr.slice(-3000)}`)), ms);
  });
  try {
    return await Promise.race([agent.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** JSON log records of the agent so far. */
function records(agent: RunningAgent): Record<string, unknown>[] {
  return agent
    .output()
    .stderr.split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** TCP ports the process listens on (its socket inodes matched against /proc/<pid>/net/tcp{,6}). */
async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of (await readOr(`/proc/${pid}/net/${table}`)).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode: st 0A = LISTEN.
      if (f[3] === '0A' && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/** Whether /proc/<pid>/status shows SIGUSR1 (10: bit 0x200) pending for the process. */
function sigusr1Pending(status: string): boolean {
  const m = /^ShdPnd:\s*([0-9a-f]+)$/m.exec(status);
  return m !== null && (BigInt(`0x${m[1]}`) & 0x200n) !== 0n;
}

/** Whether anything accepts a connection on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Live (non-zombie) processes in process group `pgid`, from /proc. */
async function groupMembers(pgid: number): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readOr(`/proc/${e}/stat`);
    if (!stat) continue;
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') out.push(Number(e));
  }
  return out;
}

/** A case directory with a file-source config; `secrets` is the secrets file's text. */
async function fileCase(name: string, opts: { secrets?: string; notify?: string; extra?: string } = {}) {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'secrets.yaml'), opts.secrets ?? 'a: "a1"\n');
  const config = join(dir, 'config.yaml');
  await writeFile(
    config,
    `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 1h }
secrets:
  a: { id: a }
files:
  - path: a
    secret: a
notify:
${opts.notify ?? '  []'}
server: { listen: "" }
${opts.extra ?? ''}`,
  );
  return { dir, config, out: join(dir, 'out') };
}

describe('SIGUSR1 never opens an inspector', () => {
  let bundle: string;
  /** Every node command line that ships: its node flags and the agent command it runs. */
  const lines: { label: string; flags: string[]; command: 'init' | 'run' }[] = [];
  /** The admission webhook's command lines (k8s-examples/webhook): checked for the flag; the probe below runs init and run. */
  const webhookLines: { label: string; flags: string[] }[] = [];

  before(async () => {
    const built = spawnSync('npm', ['run', 'build'], { cwd: REPO, encoding: 'utf8', timeout: 180_000 });
    assert.equal(built.status, 0, `npm run build failed:\n${built.stdout}\n${built.stderr}`);
    await mkdir(join(root, 'bundle'));
    bundle = join(root, 'bundle', 'secrets-agent.mjs');
    await copyFile(join(REPO, 'dist', 'secrets-agent.mjs'), bundle);
    const seen = new Set<string>();
    const add = (label: string, argv: string[], command: string): void => {
      if (command === 'webhook') {
        webhookLines.push({ label, flags: argv.slice(1, -1) });
        return;
      }
      assert.ok(command === 'init' || command === 'run', `${label}: runs ${command}`);
      const key = JSON.stringify([argv, command]);
      if (seen.has(key)) return;
      seen.add(key);
      // argv = [node, ...flags, script]: the node and the script are the ones here.
      lines.push({ label, flags: argv.slice(1, -1), command });
    };
    const entrypoint = ['/nodejs/bin/node', ...(await entrypointFlags()), '/app/secrets-agent.mjs'];
    add('Dockerfile ENTRYPOINT + CMD', entrypoint, 'run');
    add('Dockerfile ENTRYPOINT, init', entrypoint, 'init');
    for (const c of await exampleAgentContainers()) add(`k8s-examples/${c.file} ${c.name}`, c.command ?? entrypoint, c.args?.[0] ?? 'run');
    assert.ok(lines.some((l) => l.label.startsWith('k8s-examples/') && l.command === 'init'), 'an example init container command line is tested');
  });

  /** Start, wait until it is working, SIGUSR1, check; SIGTERM and check the exit. */
  async function probe(name: string, agentOpts: { entry: string; nodeFlags?: string[] }, command: 'init' | 'run'): Promise<void> {
    // init on an unreadable secrets file retries (transient) until SIGTERM; run renders and waits.
    const c = await fileCase(name, command === 'init' ? { secrets: 'a: [\n' } : {});
    const agent = start([command, '--config', c.config, ...(command === 'init' ? ['--timeout', '5m'] : [])], agentOpts);
    try {
      await probeAgent(agent, c, agentOpts, command);
    } finally {
      // A failed probe must not leave an inspector holding 9229 for the next one.
      if (agent.child.exitCode === null && agent.child.signalCode === null) agent.child.kill('SIGKILL');
      await agent.exited;
    }
  }

  async function probeAgent(agent: RunningAgent, c: { dir: string; out: string }, agentOpts: { nodeFlags?: string[] }, command: 'init' | 'run'): Promise<void> {
    await agent.waitFor(command === 'init' ? /not valid YAML/ : /first render complete/, 60_000);
    const pid = agent.child.pid!;
    assert.deepEqual(await listeningPorts(pid), [], 'listens on nothing before the signal');
    process.kill(pid, 'SIGUSR1');
    const blocked = agentOpts.nodeFlags?.includes('--disable-sigusr1') ?? false;
    if (blocked) {
      // --disable-sigusr1 blocks SIGUSR1 in every thread: it stays pending, never delivered, so nothing logs it.
      await waitUntil('SIGUSR1 pending (blocked)', async () => (sigusr1Pending(await readOr(`/proc/${pid}/status`))), 20_000);
    } else {
      await agent.waitFor(/SIGUSR1 ignored|Debugger listening/, 20_000);
    }
    // An inspector would be listening by now (Node opens it before running any JS handler); give it a moment more.
    await new Promise((r) => setTimeout(r, 300));
    const { stderr } = agent.output();
    assert.doesNotMatch(stderr, /Debugger listening/);
    assert.deepEqual(await listeningPorts(pid), [], 'no listening socket after SIGUSR1');
    assert.equal(await accepts(9229), false, 'nothing on 127.0.0.1:9229');
    const ignored = records(agent).filter((r) => r.signal === 'SIGUSR1');
    if (blocked) {
      assert.equal(ignored.length, 0);
    } else {
      assert.equal(ignored.length, 1, 'one log line');
      assert.equal(ignored[0]?.level, 'warn');
      assert.equal(ignored[0]?.msg, 'SIGUSR1 ignored: the agent never opens a Node inspector');
    }
    if (command === 'run') {
      // Still working: an edit reaches the file.
      await writeFile(join(c.dir, 'secrets.yaml'), 'a: "a2"\n');
      await waitUntil('the new value', async () => (await readOr(join(c.out, 'a'))) === 'a2');
    }
    process.kill(pid, 'SIGTERM');
    const exit = await exitOf(agent);
    assert.deepEqual(exit, { code: command === 'init' ? 1 : 0, signal: null }, stderr);
  }

  it('every shipped command line (Dockerfile ENTRYPOINT, example `command`s) passes --disable-sigusr1', () => {
    assert.ok(lines.length >= 3);
    assert.ok(webhookLines.length >= 1, 'the webhook Deployment is among them');
    for (const l of [...lines, ...webhookLines]) assert.ok(l.flags.includes('--disable-sigusr1'), `${l.label}: ${JSON.stringify(l.flags)}`);
  });

  it('when each shipped command line runs the bundle and gets SIGUSR1, no inspector listens and the agent keeps working (Node keeps the signal blocked)', async () => {
    for (const [i, l] of lines.entries()) {
      await probe(`shipped-${i}`, { entry: bundle, nodeFlags: l.flags }, l.command);
    }
  });

  it('when the bundle runs with plain `node` (no flags) and gets SIGUSR1, no inspector listens and the agent logs one line', async () => {
    await probe('bundle-plain-run', { entry: bundle }, 'run');
    await probe('bundle-plain-init', { entry: bundle }, 'init');
  });

  it('when `node agent/main.ts` (the source, no flags) gets SIGUSR1, no inspector listens and the agent logs one line', async () => {
    await probe('source-run', { entry: MAIN }, 'run');
    await probe('source-init', { entry: MAIN }, 'init');
  });

  it('when node is started with --inspect (flags or NODE_OPTIONS), the agent refuses to run: exit 2, one line', async () => {
    const c = await fileCase('inspect');
    const cases: { nodeFlags?: string[]; env?: NodeJS.ProcessEnv; flag: string; where: string }[] = [
      { nodeFlags: ['--inspect=127.0.0.1:0'], flag: '--inspect=127.0.0.1:0', where: 'the node flags' },
      { env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1 --inspect=0' }, flag: '--inspect=0', where: 'NODE_OPTIONS' },
    ];
    for (const k of cases) {
      for (const entry of [MAIN, bundle]) {
        const agent = start(['run', '--config', c.config], { entry, ...(k.nodeFlags ? { nodeFlags: k.nodeFlags } : {}), ...(k.env ? { env: k.env } : {}) });
        const exit = await exitOf(agent);
        const { stderr } = agent.output();
        assert.deepEqual(exit, { code: 2, signal: null }, stderr);
        const fatal = records(agent);
        assert.equal(fatal.length, 1, stderr);
        assert.equal(fatal[0]?.level, 'fatal');
        assert.match(String(fatal[0]?.msg), new RegExp(`^refusing to start: ${k.flag} in ${k.where} opens a Node inspector`));
        assert.doesNotMatch(stderr, /first render/);
      }
    }
  });
});

describe('SIGHUP, SIGUSR2: never a silent exit', () => {
  it('when `run` gets SIGUSR2, it logs one line and keeps running; SIGTERM then exits 0', async () => {
    const c = await fileCase('usr2-run');
    const agent = start(['run', '--config', c.config]);
    await agent.waitFor(/first render complete/);
    process.kill(agent.child.pid!, 'SIGUSR2');
    await agent.waitFor(/SIGUSR2 ignored/);
    // Still working: an edit of the secret still reaches the file.
    await writeFile(join(c.dir, 'secrets.yaml'), 'a: "a2"\n');
    await waitUntil('the new value', async () => (await readOr(join(c.out, 'a'))) === 'a2');
    const lines = records(agent).filter((r) => r.signal === 'SIGUSR2');
    assert.deepEqual(lines.map((r) => [r.level, r.msg]), [['warn', 'SIGUSR2 ignored: it has no meaning for the agent']]);
    process.kill(agent.child.pid!, 'SIGTERM');
    assert.deepEqual(await exitOf(agent), { code: 0, signal: null });
  });

  it('when `run` gets SIGHUP, it reloads the config (as an edit would) and keeps running', async () => {
    const c = await fileCase('hup-run');
    const agent = start(['run', '--config', c.config]);
    await agent.waitFor(/first render complete/);
    // The reload takes the file as it is now: an edit made while nothing watches would be picked up the same way.
    process.kill(agent.child.pid!, 'SIGHUP');
    await agent.waitFor(/"msg":"config reloaded"/);
    const hup = records(agent).filter((r) => r.signal === 'SIGHUP');
    assert.deepEqual(hup.map((r) => [r.level, r.msg]), [['info', 'SIGHUP received: reloading the config and checking every secret now']]);
    assert.equal(agent.child.exitCode, null, 'still running');
    process.kill(agent.child.pid!, 'SIGTERM');
    assert.deepEqual(await exitOf(agent), { code: 0, signal: null });
  });

  it('when `init` gets SIGHUP or SIGUSR2 while it retries, it logs one line each and goes on; SIGTERM then ends it', async () => {
    const c = await fileCase('hup-init', { secrets: 'a: [\n' });
    const agent = start(['init', '--config', c.config, '--timeout', '5m']);
    await agent.waitFor(/not valid YAML/);
    process.kill(agent.child.pid!, 'SIGHUP');
    await agent.waitFor(/SIGHUP ignored/);
    process.kill(agent.child.pid!, 'SIGUSR2');
    await agent.waitFor(/SIGUSR2 ignored/);
    // Still retrying: fixing the file lets it finish on its own.
    await writeFile(join(c.dir, 'secrets.yaml'), 'a: "a1"\n');
    assert.deepEqual(await exitOf(agent), { code: 0, signal: null }, agent.output().stderr);
    assert.equal(await readOr(join(c.out, 'a')), 'a1');
    const lines = records(agent).filter((r) => r.signal);
    assert.deepEqual(lines.map((r) => [r.level, r.msg]), [
      ['warn', 'SIGHUP ignored: init reads its config once; SIGTERM or SIGINT stops it'],
      ['warn', 'SIGUSR2 ignored: it has no meaning for the agent'],
    ]);
  });

  describe('against moto (a source that does not announce its changes)', () => {
    let moto: Moto;
    before(async () => {
      moto = await startMoto();
    });
    after(async () => {
      for (const a of agents) {
        if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
        await a.exited;
      }
      await moto?.stop();
    });

    it('when `run` gets SIGHUP, it checks every secret now: a new version reaches the file long before the 1h interval', async () => {
      // rotationAware off: no first look after start; only the interval (1h) or a SIGHUP checks the secret.
      const dir = join(root, 'hup-moto');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'token'), 'projected-token');
      await moto.sm('CreateSecret', { Name: 'hup/a', SecretString: 'v1' });
      await writeFile(
        join(dir, 'config.yaml'),
        `source: { region: us-east-1 }
outputDir: ${join(dir, 'out')}
refresh: { interval: 1h, rotationAware: false }
secrets:
  a: { id: hup/a }
files:
  - path: a
    secret: a
server: { listen: "" }
`,
      );
      const agent = start(['run', '--config', join(dir, 'config.yaml')], { env: agentEnv(moto, join(dir, 'token')) });
      await agent.waitFor(/first render complete/, 60_000);
      assert.equal(await readOr(join(dir, 'out', 'a')), 'v1');
      await moto.sm('PutSecretValue', { SecretId: 'hup/a', SecretString: 'v2' });
      process.kill(agent.child.pid!, 'SIGHUP');
      await waitUntil('the new version on disk', async () => (await readOr(join(dir, 'out', 'a'))) === 'v2', 30_000);
      process.kill(agent.child.pid!, 'SIGTERM');
      assert.deepEqual(await exitOf(agent), { code: 0, signal: null });
    });
  });
});

describe('SIGTERM: nothing outlives the agent, nothing waits for a deadline', () => {
  /** run, with one exec notify target; an edit of the secret after the first render starts it. */
  async function notifyCase(name: string, argv: string[], extra = '') {
    const c = await fileCase(name, { notify: `  - name: hook\n    exec: ${JSON.stringify(argv)}\n    timeout: 5m\n${extra}` });
    const agent = start(['run', '--config', c.config, '--log-level', 'debug']);
    await agent.waitFor(/first render complete/);
    await writeFile(join(c.dir, 'secrets.yaml'), 'a: "a2"\n');
    return { ...c, agent };
  }

  async function stopAndCheck(agent: RunningAgent, pgid: number): Promise<void> {
    process.kill(agent.child.pid!, 'SIGTERM');
    const exit = await exitOf(agent);
    const { stderr } = agent.output();
    assert.deepEqual(exit, { code: 0, signal: null }, stderr);
    assert.doesNotMatch(stderr, /shutdown deadline reached/, 'the shutdown finished on its own, not by the 4.5 s deadline');
    assert.match(stderr, /"msg":"stopped"/);
    assert.deepEqual(await groupMembers(pgid), [], 'no process of the notify command is left');
    const skipped = records(agent).filter((r) => r.msg === 'notify target skipped');
    assert.equal(skipped.length, 1, stderr);
  }

  it('when the exec command ignores SIGTERM (and so does its child), it is SIGKILLed with its group and the agent exits 0', async () => {
    const pids = join(root, 'trap-pids');
    const c = await notifyCase('term-trap', ['/bin/sh', '-c', `trap "" TERM; sleep 300 & echo "$$ $!" > ${pids}; wait`]);
    await waitUntil('the notify command to start', async () => /^\d+ \d+\n$/.test(await readOr(pids)));
    const [shell, sleeper] = (await readFile(pids, 'utf8')).trim().split(' ').map(Number) as [number, number];
    groups.add(shell);
    assert.deepEqual((await groupMembers(shell)).sort(), [shell, sleeper].sort());
    await stopAndCheck(c.agent, shell);
    const line = records(c.agent).find((r) => r.msg === 'notify target skipped');
    assert.equal(line?.killedWith, 'SIGKILL');
  });

  it('when the exec command dies on SIGTERM but leaves a grandchild that ignores it, the grandchild is SIGKILLed too', async () => {
    const pids = join(root, 'orphan-pids');
    const c = await notifyCase('term-orphan', ['/bin/sh', '-c', `(trap "" TERM; exec sleep 300) & echo "$$ $!" > ${pids}; wait`]);
    await waitUntil('the notify command to start', async () => /^\d+ \d+\n$/.test(await readOr(pids)));
    const [shell, sleeper] = (await readFile(pids, 'utf8')).trim().split(' ').map(Number) as [number, number];
    groups.add(shell);
    await waitUntil('the grandchild to be sleep', async () => (await readOr(`/proc/${sleeper}/comm`)) === 'sleep\n');
    await stopAndCheck(c.agent, shell);
  });

  it('when a notify is waiting for its splay, SIGTERM cancels it at once', async () => {
    const marker = join(root, 'splay-ran');
    const c = await notifyCase('term-splay', ['/bin/sh', '-c', `touch ${marker}`], '    splay: 1h\n');
    await c.agent.waitFor(/notify target waiting for splay/);
    process.kill(c.agent.child.pid!, 'SIGTERM');
    const exit = await exitOf(c.agent);
    const { stderr } = c.agent.output();
    assert.deepEqual(exit, { code: 0, signal: null }, stderr);
    assert.doesNotMatch(stderr, /shutdown deadline reached/);
    assert.match(stderr, /"msg":"stopped"/);
    assert.equal(await readOr(marker, 'absent'), 'absent', 'the target never ran');
    assert.equal(records(c.agent).filter((r) => r.msg === 'notify target skipped').length, 1);
  });

  it('when `init` gets SIGTERM or SIGINT while it retries, it exits 1 with one line saying nothing was written', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const c = await fileCase(`init-${signal}`, { secrets: 'a: [\n' });
      const agent = start(['init', '--config', c.config, '--timeout', '5m']);
      await agent.waitFor(/not valid YAML/);
      const before = records(agent).length;
      process.kill(agent.child.pid!, signal);
      const exit = await exitOf(agent);
      const { stderr } = agent.output();
      assert.deepEqual(exit, { code: 1, signal: null }, stderr);
      const after = records(agent).slice(before);
      assert.deepEqual(after.map((r) => [r.level, r.signal, r.msg]), [['error', signal, `interrupted by ${signal}; nothing written: the previous files are unchanged`]]);
      assert.equal(stderr.split('\n').filter((l) => l && !l.startsWith('{')).length, 0, 'every stderr line is JSON');
      assert.equal(await readOr(join(c.out, 'a'), 'absent'), 'absent');
    }
  });
});
