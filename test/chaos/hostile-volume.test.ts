// A hostile volume: the app container shares the volume and can write to it.
// Before each real `init` (and during a real `run`), the test plants symlinks
// to a sentinel outside outputDir, foreign files and directories, FIFOs, and
// generation-shaped names pointing elsewhere; the config itself asks for
// unsafe paths. The agent must refuse or safely replace every one of them, and
// the sentinel directory outside outputDir must keep every byte, mode, mtime
// and inode (compared before and after every case).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunResult, RunningAgent } from '../support/cli.ts';
import { CANARY, Leaks, chaosAgent, chaosRun, cleanEnv, fingerprint, hasStackTrace, readOr, volume, waitUntil } from '../support/chaos-harness.ts';
import { stopAll } from '../support/procs.ts';

const GEN_NAME = '..2020_01_01_00_00_00.000000000';

describe('hostile volume: planted links, foreign entries, unsafe paths', { concurrency: 1 }, () => {
  let root: string;
  let outside: string;
  let secrets: string;
  const leaks = new Leaks();
  const agents: RunningAgent[] = [];
  let outsideBefore: Map<string, string>;
  let cases = 0;

  /** Every entry under `outside` (recursively, never following links) -> fingerprint. */
  async function snapshotOutside(): Promise<Map<string, string>> {
    const map = new Map<string, string>();
    const walk = async (dir: string, prefix: string): Promise<void> => {
      map.set(`${prefix}.`, await fingerprint(dir));
      for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await walk(p, `${prefix}${e.name}/`);
        else map.set(`${prefix}${e.name}`, await fingerprint(p));
      }
    };
    await walk(outside, '');
    return map;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sa-chaos-hostile-'));
    outside = join(root, 'outside');
    await mkdir(join(outside, 'conf'), { recursive: true });
    await writeFile(join(outside, 'sentinel'), 'root:x:0:0:sentinel:/root:/bin/sh\n', { mode: 0o644 });
    await writeFile(join(outside, 'db.env'), 'SENTINEL_DB_ENV=1\n', { mode: 0o644 });
    await writeFile(join(outside, 'conf', 'app.properties'), 'sentinel=1\n', { mode: 0o644 });
    // Old mtimes, so any write would show.
    spawnSync('touch', ['-d', '2001-02-03 04:05:06', join(outside, 'sentinel'), join(outside, 'db.env'), join(outside, 'conf', 'app.properties')]);
    secrets = join(root, 'secrets.json');
    await writeFile(secrets, JSON.stringify({ db: { user: 'app', password: `pw-${CANARY}` }, key: `api-${CANARY}` }));
    outsideBefore = await snapshotOutside();
  });

  after(async () => {
    await stopAll(agents);
    if (root) await rm(root, { recursive: true, force: true });
    process.stdout.write(`# hostile volume: ${cases} planted/unsafe cases; the sentinel tree outside outputDir (${outsideBefore?.size ?? 0} entries) unchanged after each\n`);
  });

  const config = (out: string, files = `  - path: db.env
    template: "USER={{ secrets.db.user }}\\nPASSWORD={{ secrets.db.password }}\\n"
  - path: api-key
    secret: key
  - path: conf/app.properties
    template: "user={{ secrets.db.user }}\\n"`, extra = '') => `source: { type: file, path: ${secrets} }
outputDir: ${out}
secrets:
  db: { id: db }
  key: { id: key }
files:
${files}
server: { listen: "" }
${extra}`;

  async function init(name: string, plant: (out: string) => Promise<void>, extra = ''): Promise<{ out: string; r: RunResult }> {
    const dir = join(root, name);
    const out = join(dir, 'out');
    await mkdir(out, { recursive: true });
    await plant(out);
    const path = join(dir, 'config.yaml');
    await writeFile(path, config(out, undefined, extra));
    const r = await chaosRun(name, ['init', '--config', path, '--timeout', '10s', '--log-level', 'debug'], leaks, { env: cleanEnv(), timeoutMs: 30_000 });
    cases++;
    assert.notEqual(r.signal, 'SIGKILL', `${name}: init hung`);
    assert.ok(!hasStackTrace(r.stderr), `${name}: stack trace in the output`);
    assert.doesNotMatch(r.stderr, /unexpected error|"level":"fatal"|unhandled/i, name);
    assert.deepEqual(await snapshotOutside(), outsideBefore, `${name}: something outside outputDir changed`);
    return { out, r };
  }

  /** The files are right and reachable through the agent's own links, and only ..data and one generation are reserved. */
  async function assertClean(out: string, name: string): Promise<void> {
    assert.equal(await readFile(join(out, 'db.env'), 'utf8'), `USER=app\nPASSWORD=pw-${CANARY}\n`, name);
    assert.equal(await readFile(join(out, 'api-key'), 'utf8'), `api-${CANARY}`, name);
    assert.equal(await readFile(join(out, 'conf', 'app.properties'), 'utf8'), 'user=app\n', name);
    for (const top of ['db.env', 'api-key', 'conf']) assert.equal(await readlink(join(out, top)), `..data/${top}`, `${name}: ${top}`);
    const v = await volume(out);
    assert.deepEqual(v.reserved, ['..data', v.data].sort(), `${name}: reserved names left: ${v.reserved.join(', ')}`);
  }

  // Each case has its own outputDir: two at a time.
  describe('cases', { concurrency: 2 }, () => {
    it('when db.env is a planted symlink to a file outside, it replaces the link and never writes through it', async () => {
      const { out, r } = await init('link-file', (o) => symlink(join(outside, 'db.env'), join(o, 'db.env')));
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'link-file');
    });

    it('when conf (a directory of the payload) is a planted symlink to a directory outside, it replaces the link', async () => {
      const { out, r } = await init('link-dir', (o) => symlink(join(outside, 'conf'), join(o, 'conf')));
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'link-dir');
    });

    it('when ..data_tmp is a planted symlink to a directory outside, it removes the link, not the directory', async () => {
      const { out, r } = await init('data-tmp', (o) => symlink(outside, join(o, '..data_tmp')));
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'data-tmp');
    });

    it('when ..data_tmp is a planted directory holding a link outside, it removes it without following the link', async () => {
      const { out, r } = await init('data-tmp-dir', async (o) => {
        await mkdir(join(o, '..data_tmp'));
        await symlink(outside, join(o, '..data_tmp', 'escape'));
      });
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'data-tmp-dir');
    });

    it('when ..data is a planted symlink to a directory outside, it is replaced by a generation of its own', async () => {
      const { out, r } = await init('data-link', (o) => symlink(outside, join(o, '..data')));
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'data-link');
    });

    it('when a generation-shaped name is a symlink to a directory outside, cleaning it up removes only the link', async () => {
      const { out, r } = await init('gen-link', async (o) => {
        await symlink(outside, join(o, GEN_NAME));
        await symlink(GEN_NAME, join(o, '..data'));
        await symlink('..data/db.env', join(o, 'db.env'));
      });
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'gen-link');
    });

    it('when an orphan generation-shaped directory holds links outside, cleaning it up never follows them', async () => {
      const { out, r } = await init('gen-orphan', async (o) => {
        await mkdir(join(o, GEN_NAME));
        await symlink(outside, join(o, GEN_NAME, 'outside-dir'));
        await symlink(join(outside, 'sentinel'), join(o, GEN_NAME, 'sentinel'));
      });
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'gen-orphan');
    });

    it('when a file of the live generation was replaced by a symlink or a FIFO, it writes a new generation and never follows or blocks', async () => {
      // A first, clean generation.
      const name = 'inside-gen';
      const { out } = await init(name, () => Promise.resolve());
      const data = await readlink(join(out, '..data'));
      // The app replaces files inside the live generation.
      await rm(join(out, data, 'db.env'));
      await symlink(join(outside, 'db.env'), join(out, data, 'db.env'));
      await rm(join(out, data, 'api-key'));
      assert.equal(spawnSync('mkfifo', [join(out, data, 'api-key')]).status, 0);
      const path = join(root, name, 'config.yaml');
      const r = await chaosRun(`${name} #2`, ['init', '--config', path, '--timeout', '10s'], leaks, { env: cleanEnv(), timeoutMs: 30_000 });
      cases++;
      assert.equal(r.code, 0, r.stderr);
      assert.notEqual(await readlink(join(out, '..data')), data, 'a new generation replaces the tampered one');
      assert.deepEqual(await snapshotOutside(), outsideBefore);
      await assertClean(out, name);
    });

    it('when foreign files and directories sit beside the files, they are left alone', async () => {
      const { out, r } = await init('foreign', async (o) => {
        await writeFile(join(o, 'notes.txt'), 'the app wrote this\n');
        await mkdir(join(o, 'cache'));
        await writeFile(join(o, 'cache', 'x'), 'x');
        await symlink(join(outside, 'sentinel'), join(o, 'passwd'));
      });
      assert.equal(r.code, 0, r.stderr);
      await assertClean(out, 'foreign');
      assert.equal(await readFile(join(out, 'notes.txt'), 'utf8'), 'the app wrote this\n');
      assert.equal(await readFile(join(out, 'cache', 'x'), 'utf8'), 'x');
      assert.equal(await readlink(join(out, 'passwd')), join(outside, 'sentinel'));
    });

    it('when a foreign directory holds the name of a file, it refuses (exit 1) and writes nothing', async () => {
      const { out, r } = await init('foreign-dir', async (o) => {
        await mkdir(join(o, 'db.env'));
        await writeFile(join(o, 'db.env', 'keep'), 'keep');
      });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /\\"db\.env\\" in .* is a directory the agent did not create/);
      assert.equal(await readFile(join(out, 'db.env', 'keep'), 'utf8'), 'keep');
      assert.deepEqual((await readdir(out)).filter((n) => n.startsWith('..')), [], 'a generation was left behind');
    });

    it('when ..data is a foreign directory, it refuses (exit 1) and leaves it', async () => {
      const { out, r } = await init('data-dir', async (o) => {
        await mkdir(join(o, '..data'));
        await writeFile(join(o, '..data', 'db.env'), 'foreign');
      });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /\\"\.\.data\\" in .* is a directory the agent did not create/);
      assert.equal(await readFile(join(out, '..data', 'db.env'), 'utf8'), 'foreign');
    });

    it('when outputDir itself is a symlink to a directory outside, it refuses (exit 1)', async () => {
      const dir = join(root, 'out-link');
      await mkdir(dir, { recursive: true });
      await symlink(outside, join(dir, 'out'));
      const path = join(dir, 'config.yaml');
      await writeFile(path, config(join(dir, 'out')));
      const r = await chaosRun('out-link', ['init', '--config', path, '--timeout', '10s'], leaks, { env: cleanEnv() });
      cases++;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /is a symlink, not a directory/);
      assert.deepEqual(await snapshotOutside(), outsideBefore);
    });

    it('when the files layout finds planted links at file and directory names, it replaces them and never writes through', async () => {
      const { out, r } = await init(
        'files-layout',
        async (o) => {
          await symlink(join(outside, 'db.env'), join(o, 'db.env'));
          await symlink(join(outside, 'sentinel'), join(o, 'api-key'));
        },
        'layout: files',
      );
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await lstat(join(out, 'db.env'))).isFile());
      assert.equal(await readFile(join(out, 'db.env'), 'utf8'), `USER=app\nPASSWORD=pw-${CANARY}\n`);
      assert.equal(await readFile(join(out, 'api-key'), 'utf8'), `api-${CANARY}`);
    });

    it('when the files layout finds a directory of the payload planted as a symlink outside, it never writes through it', async () => {
      const { out, r } = await init('files-layout-dir', (o) => symlink(join(outside, 'conf'), join(o, 'conf')), 'layout: files');
      // Refusing (exit 1) or replacing the link are both safe; writing into outside/conf is not (checked by init()).
      process.stdout.write(`# files layout, conf planted as a link outside: ${r.code === 0 ? 'replaced' : 'refused'} (exit ${r.code})\n`);
      if (r.code === 0) {
        assert.ok(!(await lstat(join(out, 'conf'))).isSymbolicLink(), 'conf is still the planted link');
        assert.equal(await readFile(join(out, 'conf', 'app.properties'), 'utf8'), 'user=app\n');
      } else {
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /conf/);
      }
    });

    it('when the config asks for unsafe paths, validate and init refuse with exit 2 and write nothing', async () => {
      const unsafe = ['../x', '../../outside/sentinel', '/etc/passwd', join(outside, 'sentinel'), '..data', '..data/db.env', '..data_tmp', '.hidden', 'a/../../x', 'a//b', 'conf/..', '..2020_01_01_00_00_00.000000000/x'];
      // One config with every unsafe path: the agent lists every problem, not only the first.
      const dir = join(root, 'unsafe');
      await mkdir(dir, { recursive: true });
      const path = join(dir, 'config.yaml');
      await writeFile(path, config(join(dir, 'out'), unsafe.map((p) => `  - path: ${JSON.stringify(p)}\n    secret: key`).join('\n')));
      for (const cmd of ['validate', 'init']) {
        const r = await chaosRun(`unsafe paths ${cmd}`, [cmd, '--config', path], leaks, { env: cleanEnv() });
        assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
        for (const i of unsafe.keys()) assert.match(r.stderr, new RegExp(`files\\[${i}\\]\\.path`), `${cmd}: ${unsafe[i]} is not reported`);
        assert.ok(!hasStackTrace(r.stderr));
      }
      cases += unsafe.length;
      assert.deepEqual(await readdir(dir), ['config.yaml'], 'something was written');
      assert.deepEqual(await snapshotOutside(), outsideBefore);
    });

    it('when the app plants links while the sidecar rotates, each write repairs them and nothing outside changes', async () => {
      const dir = join(root, 'run');
      const out = join(dir, 'out');
      await mkdir(dir, { recursive: true });
      const own = join(dir, 'secrets.json');
      const put = (n: number) => writeFile(own, JSON.stringify({ db: { user: `app${n}`, password: `pw-${CANARY}` }, key: `api-${n}-${CANARY}` }));
      await put(0);
      const path = join(dir, 'config.yaml');
      await writeFile(path, config(out, undefined, 'refresh: { interval: 100ms, rotationAware: false }').replace(secrets, own));
      const agent = chaosAgent('run', ['run', '--config', path, '--log-level', 'debug'], leaks, { env: cleanEnv() });
      agents.push(agent);
      await agent.waitFor(/first render complete/);
      // Each plant is atomic (a link made aside, renamed over the name): the sidecar verifies its
      // volume every interval, so an `rm` then `symlink` would race its repair of the name.
      const plant = async (target: string, at: string): Promise<void> => {
        await symlink(target, `${at}.planted`);
        await rename(`${at}.planted`, at);
      };
      const attacks: ((o: string) => Promise<void>)[] = [
        (o) => plant(join(outside, 'db.env'), join(o, 'db.env')),
        (o) => plant(join(outside, 'conf'), join(o, 'conf')),
        (o) => symlink(outside, join(o, '..data_tmp')),
        (o) => plant(join(outside, 'sentinel'), join(o, 'api-key')),
      ];
      for (const [n, attack] of attacks.entries()) {
        await attack(out);
        await put(n + 1);
        await waitUntil(`rotation ${n + 1}`, async () => (await readOr(join(out, 'api-key'))) === `api-${n + 1}-${CANARY}`, 10_000);
        cases++;
        assert.equal(await readlink(join(out, 'db.env')), '..data/db.env');
        assert.equal(await readlink(join(out, 'conf')), '..data/conf');
        assert.deepEqual(await snapshotOutside(), outsideBefore, `attack ${n}: something outside outputDir changed`);
      }
      await sleep(300);
      agent.child.kill('SIGTERM');
      assert.equal((await agent.exited).code, 0);
      assert.doesNotMatch(agent.output().stderr, /unhandled|"level":"fatal"/i);
    });
  });

  it('when the suite is done, no secret value appeared in any output', () => {
    leaks.assertClean('hostile volume');
  });
});
