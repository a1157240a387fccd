// The volume as the real CLI leaves it (local `file` source): one agent at a
// time (the volume lock), the files layout across hot reloads and a layout
// change, and a read-only volume.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { killAgent } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

const GEN_RE = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$/;
const N_FILES = 60;

const dirs: string[] = [];
const agents = new Set<RunningAgent>();
after(async () => {
  // kill -9, then wait until each agent and everything it started is gone.
  await Promise.all([...agents].map((a) => killAgent(a)));
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function start(args: string[]): RunningAgent {
  const a = startAgent(args);
  agents.add(a);
  return a;
}

/** A config dir: secrets.yaml + config.yaml writing `files` (path -> secret) to `out`. */
async function project(files: Record<string, string>, extra = '', outputDir = 'out'): Promise<{ dir: string; config: string; out: string; setFiles: (f: Record<string, string>, extra?: string) => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-volume-'));
  dirs.push(dir);
  await writeFile(join(dir, 'secrets.yaml'), `a: "${'A'.repeat(2000)}"\nb: "b1"\n`);
  const config = join(dir, 'config.yaml');
  const setFiles = async (f: Record<string, string>, more = extra): Promise<void> => {
    const list = Object.entries(f).map(([p, s]) => `  - path: ${p}\n    secret: ${s}\n`).join('');
    await writeFile(config, `source: { type: file, path: secrets.yaml }\noutputDir: ${outputDir}\nrefresh: { interval: 200ms }\n${more}secrets:\n  a: { id: a }\n  b: { id: b }\nfiles:\n${list}server: { listen: "" }\n`);
  };
  await setFiles(files);
  return { dir, config, out: outputDir.startsWith('/') ? outputDir : join(dir, outputDir), setFiles };
}

function manyFiles(): Record<string, string> {
  const f: Record<string, string> = {};
  for (let i = 0; i < N_FILES; i++) f[`f${String(i).padStart(2, '0')}`] = 'a';
  f['certs/tls.crt'] = 'b';
  return f;
}

/** Exactly one complete generation behind ..data, every link resolving to its bytes. */
async function assertOneGeneration(out: string, files: Record<string, string>): Promise<void> {
  const names = await readdir(out);
  const gens = names.filter((n) => GEN_RE.test(n));
  assert.equal(gens.length, 1, `one generation, got ${gens.join(', ')}`);
  assert.equal(await readlink(join(out, '..data')), gens[0]);
  assert.deepEqual(names.filter((n) => n.startsWith('..') && !GEN_RE.test(n)).sort(), ['..data'], 'no lock, temp or half-written entries left');
  for (const [p, s] of Object.entries(files)) {
    const top = p.split('/')[0]!;
    assert.equal(await readlink(join(out, top)), `..data/${top}`, `link ${top}`);
    assert.equal(await readFile(join(out, p), 'utf8'), s === 'a' ? 'A'.repeat(2000) : 'b1', `bytes of ${p}`);
  }
}

function jsonLines(text: string): { msg?: string; level?: string; code?: string }[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string });
}

describe('volume lock: one agent writes an outputDir at a time', { concurrency: true }, () => {
  it('when two init run at once on one outputDir (three rounds), both exit 0 and the volume holds one complete generation with every link', async () => {
    const files = manyFiles();
    const p = await project(files);
    for (let round = 0; round < 3; round++) {
      await rm(p.out, { recursive: true, force: true });
      const [x, y] = await Promise.all([runAgent(['init', '--config', p.config]), runAgent(['init', '--config', p.config])]);
      assert.equal(x.code, 0, x.stderr);
      assert.equal(y.code, 0, y.stderr);
      await assertOneGeneration(p.out, files);
    }
  });

  it('when a run holds the volume, an init and a second run wait, then exit 1 naming the holder; the run\'s files stay intact', async () => {
    const files = manyFiles();
    const p = await project(files);
    const holder = start(['run', '--config', p.config]);
    await holder.waitFor(/first render complete/);
    const [second, init] = await Promise.all([runAgent(['run', '--config', p.config], { timeoutMs: 60_000 }), runAgent(['init', '--config', p.config], { timeoutMs: 60_000 })]);
    for (const r of [second, init]) {
      assert.equal(r.code, 1, r.stderr);
      const err = jsonLines(r.stderr).find((l) => l.code === 'ELOCKED');
      assert.ok(err, `an ELOCKED error line:\n${r.stderr}`);
      assert.match(err.msg!, new RegExp(`^outputDir ${p.out} is locked by another secrets-agent \\(pid ${holder.child.pid} `));
      assert.match(err.msg!, /nothing was written, the previous files are unchanged; run one agent per volume/);
      assert.ok(jsonLines(r.stderr).some((l) => l.msg === 'another agent holds the volume lock; waiting for it'));
    }
    assert.ok(!/wrote a new generation/.test(second.stderr + init.stderr));
    holder.child.kill('SIGTERM');
    await holder.exited;
    await assertOneGeneration(p.out, files);
  });

  it('when a second run waiting for the lock gets SIGTERM, it stops at once with exit 0, having written nothing', async () => {
    const files = manyFiles();
    const p = await project(files);
    const holder = start(['run', '--config', p.config]);
    await holder.waitFor(/first render complete/);
    const second = start(['run', '--config', p.config]);
    await second.waitFor(/another agent holds the volume lock; waiting for it/);
    second.child.kill('SIGTERM');
    const res = await second.exited;
    const { stderr } = second.output();
    assert.equal(res.code, 0, stderr);
    assert.ok(!/shutdown deadline reached/.test(stderr), `it stopped on its own, not at the hard deadline:\n${stderr}`);
    assert.ok(jsonLines(stderr).some((l) => l.msg === 'stopped before taking the volume lock; nothing written'), stderr);
    holder.child.kill('SIGTERM');
    await holder.exited;
    await assertOneGeneration(p.out, files);
  });

  it('when init runs and exits before run starts (native sidecar order), run takes the lock at once', async () => {
    const files = manyFiles();
    const p = await project(files);
    const init = await runAgent(['init', '--config', p.config]);
    assert.equal(init.code, 0, init.stderr);
    const run = start(['run', '--config', p.config]);
    await run.waitFor(/first render complete/);
    assert.ok(!/waiting for it/.test(run.output().stderr), 'no wait for a released lock');
    run.child.kill('SIGTERM');
    await run.exited;
    await assertOneGeneration(p.out, files);
  });

  it('when the holder was killed with SIGKILL, the next agent takes its lease over at once; a lease of another PID namespace is taken over once not refreshed', async () => {
    const files = manyFiles();
    const p = await project(files);
    const run = start(['run', '--config', p.config]);
    await run.waitFor(/first render complete/);
    run.child.kill('SIGKILL');
    await run.exited;
    assert.ok((await lstat(join(p.out, '..lock'))).isFile(), 'the killed agent left its lease');
    const t0 = Date.now();
    const init = await runAgent(['init', '--config', p.config]);
    assert.equal(init.code, 0, init.stderr);
    assert.ok(Date.now() - t0 < 15_000, 'no wait for the lease to expire');
    assert.ok(jsonLines(init.stderr).some((l) => l.msg === 'taking over a stale volume lock'));
    await assertOneGeneration(p.out, files);

    // Another container's agent (pid not visible here), killed long ago: its lease is 30 s old.
    await writeFile(join(p.out, '..lock'), JSON.stringify({ pid: 1, start: '1', pidns: 'pid:[1]', boot: 'other', host: 'elsewhere' }));
    const old = new Date(Date.now() - 30_000);
    execFileSync('touch', ['-h', '-d', old.toISOString(), join(p.out, '..lock')]);
    const again = await runAgent(['init', '--config', p.config]);
    assert.equal(again.code, 0, again.stderr);
    await assertOneGeneration(p.out, files);
  });
});

describe('layout files across hot reloads and restarts', { concurrency: true }, () => {
  it('when files are removed from the config, or certs/tls.crt becomes certs, the reload applies it: removed files and their empty directories are gone', async () => {
    const p = await project({ keep: 'b', 'certs/tls.crt': 'b', 'sub/deep/x': 'b', gone: 'b' }, 'layout: files\n');
    const run = start(['run', '--config', p.config]);
    await run.waitFor(/first render complete/);
    await writeFile(join(p.out, 'foreign'), 'not the agent\'s');
    await p.setFiles({ keep: 'b', certs: 'b' });
    await waitUntil('the reload', () => jsonLines(run.output().stderr).some((l) => l.msg === 'config reloaded'), 20_000);
    await waitUntil('certs as a file', async () => (await lstat(join(p.out, 'certs')).catch(() => undefined))?.isFile() === true);
    assert.deepEqual((await readdir(p.out)).filter((n) => n !== '..lock').sort(), ['..manifest', 'certs', 'foreign', 'keep']);
    assert.equal(await readFile(join(p.out, 'certs'), 'utf8'), 'b1');
    // And back: a file becomes a directory again.
    await p.setFiles({ keep: 'b', 'certs/tls.crt': 'b' });
    await waitUntil('certs/tls.crt', async () => (await readOr(join(p.out, 'certs', 'tls.crt'))) === 'b1', 20_000);
    assert.ok(!jsonLines(run.output().stderr).some((l) => l.level === 'error' || (l.level as unknown) === 50), run.output().stderr);
    run.child.kill('SIGTERM');
    await run.exited;
  });

  it('when the new config\'s files cannot be written, the reload is reported as failed, not as reloaded', async () => {
    const p = await project({ keep: 'b' }, 'layout: files\n');
    const run = start(['run', '--config', p.config]);
    await run.waitFor(/first render complete/);
    await mkdir(join(p.out, 'blocked'));
    await writeFile(join(p.out, 'blocked', 'foreign'), 'not the agent\'s');
    await p.setFiles({ keep: 'b', blocked: 'b' });
    await run.waitFor(/config reloaded, but writing its files failed/, 20_000);
    assert.ok(!jsonLines(run.output().stderr).some((l) => l.msg === 'config reloaded'));
    assert.equal(await readFile(join(p.out, 'blocked', 'foreign'), 'utf8'), 'not the agent\'s');
    run.child.kill('SIGTERM');
    await run.exited;
  });

  it('when a volume written with layout files is written with layout generations (a restart) and back, each init succeeds and leaves only that layout', async () => {
    const files = { 'certs/tls.crt': 'b', env: 'a' };
    const p = await project({ ...files, old: 'b' }, 'layout: files\n');
    assert.equal((await runAgent(['init', '--config', p.config])).code, 0);
    await p.setFiles(files, 'layout: generations\n');
    const gen = await runAgent(['init', '--config', p.config]);
    assert.equal(gen.code, 0, gen.stderr);
    await assertOneGeneration(p.out, files);
    assert.deepEqual((await readdir(p.out)).filter((n) => !n.startsWith('..')).sort(), ['certs', 'env']);
    await p.setFiles(files, 'layout: files\n');
    const back = await runAgent(['init', '--config', p.config]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual((await readdir(p.out)).sort(), ['..manifest', 'certs', 'env']);
    assert.ok((await lstat(join(p.out, 'certs'))).isDirectory());
  });
});

describe('read-only volume', () => {
  it('when outputDir is on a read-only mount (missing or present), init exits 1 saying EROFS: mount it writable', async (t: TestContext) => {
    const dir = await mkdtemp(join(tmpdir(), 'sa-volume-ro-'));
    dirs.push(dir);
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (e) {
      const reason = `cannot mount a tmpfs (needs root/CAP_SYS_ADMIN): ${String((e as Error).message).split('\n')[0]}`;
      if (process.env.CI) assert.fail(`${reason}; the read-only volume test must run in CI`);
      return t.skip(reason);
    }
    t.after(() => execFileSync('umount', [mnt]));
    await mkdir(join(mnt, 'present'));
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    for (const sub of ['missing/out', 'present']) {
      const p = await project({ env: 'b' }, '', join(mnt, sub));
      const r = await runAgent(['init', '--config', p.config]);
      assert.equal(r.code, 1, r.stderr);
      const err = jsonLines(r.stderr).find((l) => l.code === 'EROFS');
      assert.ok(err, `an EROFS error line for ${sub}:\n${r.stderr}`);
      assert.match(err.msg!, /^read-only file system \(EROFS\) .*nothing was written.*the volume is read-only: mount it writable in the agent container/);
    }
  });
});
