import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createWriter, type OutputWriter, type WriteResult } from '../../../agent/output/index.ts';
import { WriteError } from '../../../agent/errors.ts';
import type { RenderedFile } from '../../../agent/types.ts';

const GEN_RE = /^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$/;

const tempDirs: string[] = [];
after(async () => {
  for (const d of tempDirs) await fs.rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'writer-test-'));
  tempDirs.push(d);
  return d;
}

function file(p: string, content: string, mode = 0o400, owner: { uid?: number; gid?: number } = {}): RenderedFile {
  return { path: p, content: Buffer.from(content), mode, ...owner };
}

async function setup(layout: 'generations' | 'files' = 'generations'): Promise<{ out: string; writer: OutputWriter }> {
  const out = path.join(await tempDir(), 'out');
  const writer = createWriter({ outputDir: out, layout });
  await writer.prepare();
  return { out, writer };
}

async function generations(out: string): Promise<string[]> {
  return (await fs.readdir(out)).filter((n) => GEN_RE.test(n)).sort();
}

/** The entries of `dir`, without the volume lock this process holds on every outputDir it wrote (`..lock`, see lock.ts). */
async function listing(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => n !== '..lock').sort();
}

/** Asserts the complete generations layout for `files`: ..data, one live generation, links, bytes, modes. */
async function assertLayout(out: string, files: readonly RenderedFile[], result: WriteResult): Promise<void> {
  const gen = await fs.readlink(path.join(out, '..data'));
  assert.match(gen, GEN_RE);
  assert.equal(result.generation, gen);
  assert.ok((await fs.lstat(path.join(out, gen))).isDirectory(), 'the generation is a real directory');
  const top = new Set(files.map((f) => f.path.split('/')[0]!));
  for (const name of top) assert.equal(await fs.readlink(path.join(out, name)), `..data/${name}`, `link ${name}`);
  for (const f of files) {
    const real = path.join(out, gen, f.path);
    const st = await fs.lstat(real);
    assert.ok(st.isFile(), `${f.path} is a regular file in the generation`);
    assert.equal((st.mode & 0o7777).toString(8), f.mode.toString(8), `mode of ${f.path}`);
    assert.deepEqual(await fs.readFile(path.join(out, f.path)), f.content, `bytes of ${f.path} through its link`);
  }
}

/** Everything about a directory tree outside outputDir that a bad write could change. */
async function fingerprint(dir: string): Promise<string> {
  const lines: string[] = [];
  for (const name of (await fs.readdir(dir, { recursive: true })).sort()) {
    const st = await fs.lstat(path.join(dir, name), { bigint: true });
    const bytes = st.isFile() ? (await fs.readFile(path.join(dir, name))).toString('hex') : '';
    lines.push(`${name} ${st.mode} ${st.ino} ${st.mtimeNs} ${st.size} ${bytes}`);
  }
  return lines.join('\n');
}

/** A directory outside outputDir holding files an attacker would like us to overwrite. */
async function outsideDir(): Promise<{ dir: string; sentinel: string; before: string; assertUntouched: () => Promise<void> }> {
  const dir = await tempDir();
  await fs.writeFile(path.join(dir, 'sentinel'), 'do not touch\n');
  await fs.writeFile(path.join(dir, 'db.env'), 'PASSWORD=v2\n', { mode: 0o400 });
  const before = await fingerprint(dir);
  return {
    dir,
    sentinel: path.join(dir, 'sentinel'),
    before,
    assertUntouched: async () => assert.equal(await fingerprint(dir), before, 'nothing outside outputDir changed'),
  };
}

async function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
  const old = process.umask(mask);
  try {
    return await fn();
  } finally {
    process.umask(old);
  }
}

describe('generations layout', () => {
  it('when writing for the first time, it creates ..data, one generation, the user-visible links, bytes and modes', async () => {
    // Prepare
    const { out, writer } = await setup();
    const files = [
      file('db.env', 'PASSWORD=one\n', 0o400),
      file('app.json', '{"a":1}\n', 0o644),
      file('certs/tls.crt', 'CERT 1\n', 0o444),
      file('certs/tls.key', 'KEY 1\n', 0o400),
    ];
    // Act
    const result = await writer.write(files);
    // Assess
    const gen = result.generation!;
    assert.deepEqual(await listing(out), [gen, '..data', 'app.json', 'certs', 'db.env'].sort());
    assert.deepEqual(result.changed, ['app.json', 'certs/tls.crt', 'certs/tls.key', 'db.env']);
    await assertLayout(out, files, result);
    assert.deepEqual(await listing(path.join(out, gen)), ['app.json', 'certs', 'db.env']);
    assert.deepEqual(await listing(path.join(out, gen, 'certs')), ['tls.crt', 'tls.key']);
    assert.equal((await fs.stat(path.join(out, gen))).mode & 0o777, 0o755);
    assert.equal((await fs.stat(path.join(out, gen, 'certs'))).mode & 0o777, 0o755);
    assert.equal((await fs.stat(out)).mode & 0o777, 0o755);
  });

  for (const umask of [0, 0o077]) {
    it(`when the umask is 0${umask.toString(8)}, it still sets exactly the requested modes`, async () => {
      await withUmask(umask, async () => {
        const { out, writer } = await setup();
        const files = [file('ro', 'a', 0o400), file('rw', 'b', 0o644), file('x/exec', 'c', 0o755), file('none', 'd', 0o000)];
        const result = await writer.write(files);
        await assertLayout(out, files, result);
        assert.equal((await fs.stat(path.join(out, result.generation!, 'x'))).mode & 0o777, 0o755);
      });
    });
  }

  it('when the files change, it writes a new generation, swaps ..data, removes the old one and reports exactly the changed paths', async () => {
    const { out, writer } = await setup();
    const first = await writer.write([
      file('a.env', 'A=1\n'),
      file('b.env', 'B=1\n'),
      file('certs/tls.crt', 'CERT 1\n'),
      file('certs/tls.key', 'KEY 1\n'),
    ]);
    const next = [file('a.env', 'A=2\n'), file('c.env', 'C=1\n'), file('certs/tls.crt', 'CERT 1\n'), file('certs/tls.key', 'KEY 2\n')];

    const second = await writer.write(next);

    assert.deepEqual(second.changed, ['a.env', 'b.env', 'c.env', 'certs/tls.key']);
    assert.notEqual(second.generation, first.generation);
    assert.deepEqual(await generations(out), [second.generation]);
    await assertLayout(out, next, second);
    await assert.rejects(fs.lstat(path.join(out, 'b.env')), { code: 'ENOENT' });
    assert.deepEqual(await listing(out), [second.generation!, '..data', 'a.env', 'c.env', 'certs'].sort());
  });

  it('when every byte, mode and owner is identical, it writes nothing and reports no change', async () => {
    const { out, writer } = await setup();
    const files = [file('db.env', 'P=1\n'), file('certs/tls.crt', 'C\n', 0o444)];
    const first = await writer.write(files);
    const dataBefore = await fs.lstat(path.join(out, '..data'), { bigint: true });
    const listBefore = await listing(out);

    const again = await writer.write(files.map((f) => ({ ...f, content: Buffer.from(f.content) })));

    assert.deepEqual(again, { changed: [], generation: first.generation });
    const dataAfter = await fs.lstat(path.join(out, '..data'), { bigint: true });
    assert.equal(dataAfter.ino, dataBefore.ino);
    assert.equal(dataAfter.mtimeNs, dataBefore.mtimeNs);
    assert.deepEqual(await listing(out), listBefore);
  });

  it('when only a mode changes, it counts as a change and writes a new generation', async () => {
    const { out, writer } = await setup();
    const first = await writer.write([file('a', 'same', 0o400), file('b', 'same', 0o400)]);
    const next = [file('a', 'same', 0o440), file('b', 'same', 0o400)];

    const second = await writer.write(next);

    assert.deepEqual(second.changed, ['a']);
    assert.notEqual(second.generation, first.generation);
    await assertLayout(out, next, second);
  });

  it('when uid/gid are given, it sets the owner, and an owner change counts as a change', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to chown');
    const { out, writer } = await setup();
    const owned = [file('db.env', 'P=1\n', 0o400, { uid: 1000, gid: 1000 }), file('plain', 'x')];

    const first = await writer.write(owned);
    const st = await fs.stat(path.join(out, 'db.env'));
    assert.deepEqual([st.uid, st.gid], [1000, 1000]);
    assert.equal(st.mode & 0o7777, 0o400);
    assert.deepEqual((await writer.write(owned)).changed, []);

    const regrouped = await writer.write([file('db.env', 'P=1\n', 0o400, { uid: 1000, gid: 1001 }), file('plain', 'x')]);
    assert.deepEqual(regrouped.changed, ['db.env']);
    assert.notEqual(regrouped.generation, first.generation);
    const st2 = await fs.stat(path.join(out, 'db.env'));
    assert.deepEqual([st2.uid, st2.gid], [1000, 1001]);
  });

  it('when the file set becomes empty, it removes every link and keeps an empty live generation', async () => {
    const { out, writer } = await setup();
    await writer.write([file('a', '1'), file('d/b', '2')]);
    const result = await writer.write([]);
    assert.deepEqual(result.changed, ['a', 'd/b']);
    assert.deepEqual(await listing(out), [result.generation!, '..data'].sort());
  });

  it('when two calls overlap, it rejects the second with EBUSY and completes the first', async () => {
    const { out, writer } = await setup();
    const first = writer.write([file('a', '1')]);
    await assert.rejects(writer.write([file('a', '2')]), (e: unknown) => e instanceof WriteError && e.code === 'EBUSY');
    await assertLayout(out, [file('a', '1')], await first);
  });
});

describe('prepare', () => {
  it('when outputDir is missing, it creates it with mode 0755 whatever the umask', async () => {
    const out = path.join(await tempDir(), 'a', 'out');
    await withUmask(0o077, () => createWriter({ outputDir: out, layout: 'generations' }).prepare());
    const st = await fs.lstat(out);
    assert.ok(st.isDirectory());
    assert.equal(st.mode & 0o777, 0o755);
  });

  it('when an interrupted write left ..data_tmp, orphan generations and temp links, it removes them and keeps the live generation', async () => {
    const { out, writer } = await setup();
    const files = [file('db.env', 'P=1\n'), file('certs/tls.crt', 'C\n')];
    const live = await writer.write(files);
    const outside = await outsideDir();
    await fs.symlink(outside.dir, path.join(out, '..data_tmp'));
    await fs.mkdir(path.join(out, '..2020_01_01_00_00_00.000000001', 'certs'), { recursive: true });
    await fs.writeFile(path.join(out, '..2020_01_01_00_00_00.000000001', 'certs', 'tls.crt'), 'old');
    await fs.symlink(outside.dir, path.join(out, '..2020_01_01_00_00_00.000000002'));
    await fs.symlink('..data/db.env', path.join(out, '..db.env.tmp-0123456789ab'));

    await createWriter({ outputDir: out, layout: 'generations' }).prepare();

    assert.deepEqual(await listing(out), [live.generation!, '..data', 'certs', 'db.env'].sort());
    await assertLayout(out, files, live);
    await outside.assertUntouched();
  });

  it('when ..data is missing (a crash before the first switch), it removes every generation directory', async () => {
    const { out, writer } = await setup();
    await fs.mkdir(path.join(out, '..2020_01_01_00_00_00.000000001'));
    await writer.prepare();
    assert.deepEqual(await listing(out), []);
  });

  it('when outputDir is a symlink, it refuses with UNSAFE_PATH', async () => {
    const base = await tempDir();
    await fs.mkdir(path.join(base, 'real'));
    await fs.symlink(path.join(base, 'real'), path.join(base, 'out'));
    const writer = createWriter({ outputDir: path.join(base, 'out'), layout: 'generations' });
    await assert.rejects(writer.prepare(), (e: unknown) => e instanceof WriteError && e.code === 'UNSAFE_PATH' && e.message.includes('is a symlink'));
    await assert.rejects(writer.write([file('a', '1')]), (e: unknown) => e instanceof WriteError && e.code === 'UNSAFE_PATH');
    assert.deepEqual(await listing(path.join(base, 'real')), []);
  });
});

describe('payload validation', () => {
  const cases: { name: string; files: RenderedFile[]; code: string; says: string }[] = [
    { name: 'absolute path', files: [file('/etc/passwd', 'x')], code: 'UNSAFE_PATH', says: 'relative' },
    { name: 'parent segment', files: [file('../x', 'x')], code: 'UNSAFE_PATH', says: '".." segment' },
    { name: 'inner parent segment', files: [file('a/../../x', 'x')], code: 'UNSAFE_PATH', says: '".." segment' },
    { name: 'reserved ..data', files: [file('..data', 'x')], code: 'UNSAFE_PATH', says: 'reserved' },
    { name: 'reserved ..name in a subdirectory', files: [file('a/..b', 'x')], code: 'UNSAFE_PATH', says: 'reserved' },
    { name: 'dot segment', files: [file('./a', 'x')], code: 'UNSAFE_PATH', says: '"." segment' },
    { name: 'empty segment', files: [file('a//b', 'x')], code: 'UNSAFE_PATH', says: 'empty segment' },
    { name: 'trailing slash', files: [file('a/', 'x')], code: 'UNSAFE_PATH', says: 'empty segment' },
    { name: 'empty path', files: [file('', 'x')], code: 'UNSAFE_PATH', says: 'empty' },
    { name: 'NUL byte', files: [file('a\0b', 'x')], code: 'UNSAFE_PATH', says: 'NUL' },
    { name: 'name too long', files: [file('n'.repeat(256), 'x')], code: 'UNSAFE_PATH', says: '255 bytes' },
    { name: 'duplicate path', files: [file('a', 'x'), file('a', 'y')], code: 'UNSAFE_PATH', says: 'two files' },
    { name: 'file and directory', files: [file('a', 'x'), file('a/b', 'y')], code: 'UNSAFE_PATH', says: 'needs it to be a directory' },
    { name: 'mode out of range', files: [file('a', 'x', 0o10000)], code: 'INVALID_FILE', says: 'mode' },
    { name: 'negative uid', files: [file('a', 'x', 0o400, { uid: -1 })], code: 'INVALID_FILE', says: 'uid' },
  ];
  for (const layout of ['generations', 'files'] as const) {
    for (const c of cases) {
      it(`when a payload has a ${c.name} (${layout}), it rejects it with ${c.code} and writes nothing`, async () => {
        const { out, writer } = await setup(layout);
        await assert.rejects(writer.write(c.files), (e: unknown) => {
          assert.ok(e instanceof WriteError);
          assert.equal(e.code, c.code);
          assert.ok(e.message.includes(c.says), e.message);
          assert.ok(e.message.includes('nothing was written'), e.message);
          return true;
        });
        assert.deepEqual(await listing(out), []);
      });
    }
  }
});

describe('hostile volume', () => {
  const v1 = [file('db.env', 'PASSWORD=v1\n'), file('certs/tls.crt', 'CERT v1\n')];
  const v2 = [file('db.env', 'PASSWORD=v2\n'), file('certs/tls.crt', 'CERT v2\n')];
  type Outside = Awaited<ReturnType<typeof outsideDir>>;
  const cases: {
    name: string;
    plant: (out: string, outside: Outside) => Promise<unknown>;
    /** undefined: the write succeeds with our exact layout; else the WriteError code and the name it must mention. */
    error?: { code: string; names: string };
  }[] = [
    { name: 'db.env is a planted symlink to a file outside', plant: (out, o) => replace(out, 'db.env', () => fs.symlink(o.sentinel, path.join(out, 'db.env'))) },
    { name: 'db.env is a planted symlink to the same content outside', plant: (out, o) => replace(out, 'db.env', () => fs.symlink(path.join(o.dir, 'db.env'), path.join(out, 'db.env'))) },
    { name: 'certs is a planted symlink to a directory outside', plant: (out, o) => replace(out, 'certs', () => fs.symlink(o.dir, path.join(out, 'certs'))) },
    { name: 'db.env is a foreign regular file', plant: (out) => replace(out, 'db.env', () => fs.writeFile(path.join(out, 'db.env'), 'foreign')) },
    { name: '..data_tmp points to a directory outside', plant: (out, o) => fs.symlink(o.dir, path.join(out, '..data_tmp')) },
    { name: '..data_tmp is a foreign directory', plant: (out) => fs.mkdir(path.join(out, '..data_tmp', 'db.env'), { recursive: true }) },
    { name: '..data points to a directory outside', plant: (out, o) => replace(out, '..data', () => fs.symlink(o.dir, path.join(out, '..data'))) },
    {
      name: '..data points to a generation-named symlink to outside',
      plant: async (out, o) => {
        await fs.symlink(o.dir, path.join(out, '..2020_01_01_00_00_00.000000000'));
        await replace(out, '..data', () => fs.symlink('..2020_01_01_00_00_00.000000000', path.join(out, '..data')));
      },
    },
    { name: 'a stale link to a removed file points outside', plant: (out, o) => fs.symlink(o.sentinel, path.join(out, 'old.env')) },
    {
      name: 'certs is a foreign directory',
      plant: (out) => replace(out, 'certs', async () => {
        await fs.mkdir(path.join(out, 'certs'));
        await fs.writeFile(path.join(out, 'certs', 'mine'), 'user data');
      }),
      error: { code: 'EEXIST', names: '"certs"' },
    },
    { name: '..data is a foreign directory', plant: (out) => replace(out, '..data', () => fs.mkdir(path.join(out, '..data'))), error: { code: 'EEXIST', names: '"..data"' } },
  ];

  /** Swap the link the first write made at `name` for something else. */
  async function replace(out: string, name: string, plant: () => Promise<unknown>): Promise<void> {
    await fs.unlink(path.join(out, name));
    await plant();
  }

  for (const c of cases) {
    it(`when ${c.name}, it ${c.error ? `fails with ${c.error.code} and keeps the previous files` : 'writes its own layout'} and never touches anything outside`, async () => {
      // Prepare
      const { out, writer } = await setup();
      const outside = await outsideDir();
      const first = await writer.write(v1);
      await c.plant(out, outside);
      const volumeBefore = await fingerprint(out);
      // Act
      const attempt = writer.write(v2);
      // Assess
      if (c.error) {
        const { code, names } = c.error;
        await assert.rejects(attempt, (e: unknown) => {
          assert.ok(e instanceof WriteError);
          assert.equal(e.code, code);
          assert.ok(e.message.includes(names) && e.message.includes('the previous files are unchanged') && e.message.includes('remove'), e.message);
          return true;
        });
        assert.equal(await fingerprint(out), volumeBefore, 'the failed write changed nothing on the volume');
        assert.equal(await fs.readFile(path.join(out, first.generation!, 'db.env'), 'utf8'), 'PASSWORD=v1\n');
      } else {
        const result = await attempt;
        await assertLayout(out, v2, result);
        assert.ok(result.changed.includes('db.env'));
        await assert.rejects(fs.lstat(path.join(out, '..data_tmp')), { code: 'ENOENT' });
        // A later prepare() leaves exactly the live generation.
        await writer.prepare();
        assert.deepEqual(await generations(out), [result.generation]);
        await assertLayout(out, v2, result);
      }
      await outside.assertUntouched();
    });
  }

  it('when a link is tampered with but the content is unchanged, it repairs the link without a new generation and reports that file', async () => {
    const { out, writer } = await setup();
    const outside = await outsideDir();
    const first = await writer.write(v1);
    await fs.unlink(path.join(out, 'db.env'));
    await fs.symlink(outside.sentinel, path.join(out, 'db.env'));

    const again = await writer.write(v1);

    assert.deepEqual(again, { changed: ['db.env'], generation: first.generation });
    await assertLayout(out, v1, again);
    await outside.assertUntouched();
    assert.deepEqual(await writer.write(v1), { changed: [], generation: first.generation });
  });

  it('when outputDir starts with a planted db.env symlink, the first write replaces it', async () => {
    const { out, writer } = await setup();
    const outside = await outsideDir();
    await fs.symlink(outside.sentinel, path.join(out, 'db.env'));
    const result = await writer.write(v1);
    await assertLayout(out, v1, result);
    await outside.assertUntouched();
  });
});

describe('failure mid-write', () => {
  it('when the volume runs out of space, it fails with ENOSPC, leaves the previous generation intact and no partial generation', async (t: TestContext) => {
    // A real size-limited tmpfs: the kernel's ENOSPC, not a mock.
    const mnt = await tempDir();
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (e) {
      const reason = `cannot mount a tmpfs (needs root/CAP_SYS_ADMIN): ${String((e as Error).message).split('\n')[0]}`;
      if (process.env.CI) assert.fail(`${reason}; the ENOSPC test must run in CI`);
      return t.skip(reason);
    }
    t.after(() => execFileSync('umount', [mnt]));
    const out = path.join(mnt, 'out');
    const writer = createWriter({ outputDir: out, layout: 'generations' });
    await writer.prepare();
    const previous = [file('tls.crt', 'CERT 1\n'), file('tls.key', 'KEY 1\n')];
    const first = await writer.write(previous);
    const listBefore = await listing(out);

    await assert.rejects(writer.write([file('tls.crt', 'CERT 2\n'), file('tls.key', 'K'.repeat(128 * 1024))]), (e: unknown) => {
      assert.ok(e instanceof WriteError);
      assert.equal(e.code, 'ENOSPC');
      assert.equal(e.message, `no space left on device writing "tls.key" to ${out}: the previous files are unchanged; raise the emptyDir sizeLimit`);
      return true;
    });

    assert.deepEqual(await listing(out), listBefore);
    await assertLayout(out, previous, first);
    // The partial generation was removed, so the space is back and a fitting write succeeds.
    const next = [file('tls.crt', 'CERT 2\n'), file('tls.key', 'KEY 2\n')];
    await assertLayout(out, next, await writer.write(next));
  });
});

describe('readers during updates', () => {
  it('when a reader resolves ..data once per read while 200 generations are written, it never sees a mismatched pair', async () => {
    // The test is about ordering, not durability: on tmpfs (/dev/shm) fsync is free and 200 writes take well under a second.
    const shm = await fs.access('/dev/shm', fs.constants.W_OK).then(() => '/dev/shm', () => os.tmpdir());
    const base = await fs.mkdtemp(path.join(shm, 'writer-test-'));
    tempDirs.push(base);
    const out = path.join(base, 'out');
    const writer = createWriter({ outputDir: out, layout: 'generations' });
    const pad = 'x'.repeat(8192);
    const render = (i: number): RenderedFile[] => [file('a.txt', `crt ${i} ${pad}\n`, 0o444), file('b.txt', `key ${i} ${pad}\n`, 0o444)];
    await writer.write(render(0));
    const stopFile = path.join(await tempDir(), 'stop');
    const reader = spawn(process.execPath, [path.join(import.meta.dirname, '..', '..', 'support', 'writer-reader.ts'), out, stopFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const lines = createInterface({ input: reader.stdout })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, 'ready');

      for (let i = 1; i <= 200; i++) assert.equal((await writer.write(render(i))).changed.length, 2);

      await fs.writeFile(stopFile, '');
      const report = JSON.parse((await lines.next()).value as string);
      assert.equal(report.mismatches, 0, report.firstMismatch);
      assert.ok(report.pairs > 0, 'the reader read while the writer wrote');
      assert.ok(report.generations >= 2, 'the reader saw updates happen');
    } finally {
      if (reader.exitCode === null) {
        reader.kill();
        await once(reader, 'exit');
      }
    }
  });
});

describe('files layout', () => {
  it('when writing, it creates plain files with exact modes and no generation machinery', async () => {
    await withUmask(0o077, async () => {
      const { out, writer } = await setup('files');
      const result = await writer.write([file('db.env', 'P=1\n', 0o400), file('certs/tls.crt', 'C\n', 0o644)]);
      assert.deepEqual(result, { changed: ['certs/tls.crt', 'db.env'] });
      assert.deepEqual(await listing(out), ['..manifest', 'certs', 'db.env']);
      assert.deepEqual(await listing(path.join(out, 'certs')), ['tls.crt']);
      const st = await fs.lstat(path.join(out, 'db.env'));
      assert.ok(st.isFile());
      assert.equal(st.mode & 0o7777, 0o400);
      assert.equal((await fs.lstat(path.join(out, 'certs', 'tls.crt'))).mode & 0o7777, 0o644);
      assert.equal((await fs.lstat(path.join(out, 'certs'))).mode & 0o777, 0o755);
      assert.equal(await fs.readFile(path.join(out, 'certs', 'tls.crt'), 'utf8'), 'C\n');
    });
  });

  it('when some files are unchanged, it leaves them untouched (same inode and mtime) and replaces only the changed ones', async () => {
    const { out, writer } = await setup('files');
    await writer.write([file('a', '1'), file('sub/b', '2')]);
    const stat = (p: string) => lstatSync(path.join(out, p), { bigint: true });
    const [a0, b0] = [stat('a'), stat('sub/b')];

    assert.deepEqual(await writer.write([file('a', '1'), file('sub/b', '2')]), { changed: [] });
    assert.deepEqual([stat('a').ino, stat('a').mtimeNs, stat('sub/b').ino], [a0.ino, a0.mtimeNs, b0.ino]);

    assert.deepEqual(await writer.write([file('a', '1'), file('sub/b', '3')]), { changed: ['sub/b'] });
    assert.equal(stat('a').ino, a0.ino);
    assert.notEqual(stat('sub/b').ino, b0.ino);
    assert.equal(await fs.readFile(path.join(out, 'sub/b'), 'utf8'), '3');

    assert.deepEqual(await writer.write([file('a', '1', 0o440), file('sub/b', '3')]), { changed: ['a'] });
    assert.equal(Number(stat('a').mode) & 0o7777, 0o440);
  });

  it('when a planted symlink holds a file name, it replaces the link and never writes through it', async () => {
    const { out, writer } = await setup('files');
    const outside = await outsideDir();
    await fs.symlink(outside.sentinel, path.join(out, 'db.env'));
    await fs.symlink(outside.dir, path.join(out, 'certs'));

    const result = await writer.write([file('db.env', 'P=1\n'), file('certs/tls.crt', 'C\n')]);

    assert.deepEqual(result.changed, ['certs/tls.crt', 'db.env']);
    assert.ok((await fs.lstat(path.join(out, 'db.env'))).isFile());
    assert.ok((await fs.lstat(path.join(out, 'certs'))).isDirectory());
    assert.equal(await fs.readFile(path.join(out, 'db.env'), 'utf8'), 'P=1\n');
    await outside.assertUntouched();
  });

  it('when a file is dropped from the payload, it deletes it', async () => {
    const { out, writer } = await setup('files');
    await writer.write([file('a', '1'), file('b', '2')]);
    assert.deepEqual(await writer.write([file('a', '1')]), { changed: ['b'] });
    assert.deepEqual(await listing(out), ['..manifest', 'a']);
  });

  it('when a foreign directory holds a file name, it fails with EEXIST and writes nothing', async () => {
    const { out, writer } = await setup('files');
    await fs.mkdir(path.join(out, 'db.env'));
    await assert.rejects(writer.write([file('a', '1'), file('db.env', 'x')]), (e: unknown) => e instanceof WriteError && e.code === 'EEXIST' && e.message.includes('"db.env"'));
    assert.deepEqual(await listing(out), ['db.env']);
  });

  it('when an interrupted write left temp files, prepare() removes them and keeps the files', async () => {
    const { out, writer } = await setup('files');
    await writer.write([file('a', '1'), file('sub/b', '2')]);
    await fs.writeFile(path.join(out, '..a.tmp-0123456789ab'), 'partial');
    await fs.writeFile(path.join(out, 'sub', '..b.tmp-abcdef012345'), 'partial');
    await writer.prepare();
    assert.deepEqual(await listing(out), ['..manifest', 'a', 'sub']);
    assert.deepEqual(await listing(path.join(out, 'sub')), ['b']);
  });

  it('when a new writer (a hot reload, a restart) drops files, it removes them and the directories the agent made, from the manifest, and nothing else', async () => {
    const { out, writer } = await setup('files');
    await writer.write([file('a', '1'), file('certs/tls.crt', 'C'), file('deep/er/x', 'X'), file('keep/y', 'Y')]);
    await fs.writeFile(path.join(out, 'keep', 'foreign'), 'not ours');
    await fs.writeFile(path.join(out, 'foreign'), 'not ours');
    const next = createWriter({ outputDir: out, layout: 'files' });
    assert.deepEqual(await next.write([file('a', '1')]), { changed: ['certs/tls.crt', 'deep/er/x', 'keep/y'] });
    assert.deepEqual(await listing(out), ['..manifest', 'a', 'foreign', 'keep']);
    assert.deepEqual(await listing(path.join(out, 'keep')), ['foreign'], 'a directory holding a foreign file stays');
    assert.deepEqual(JSON.parse(await fs.readFile(path.join(out, '..manifest'), 'utf8')), { layout: 'files', files: ['a'], dirs: [] });
  });

  it('when a path changes between file and directory (certs/tls.crt -> certs -> certs/tls.crt), each write succeeds', async () => {
    const { out } = await setup('files');
    await createWriter({ outputDir: out, layout: 'files' }).write([file('certs/tls.crt', 'C'), file('a', '1')]);
    assert.deepEqual((await createWriter({ outputDir: out, layout: 'files' }).write([file('certs', 'FLAT'), file('a', '1')])).changed, ['certs', 'certs/tls.crt']);
    assert.equal(await fs.readFile(path.join(out, 'certs'), 'utf8'), 'FLAT');
    assert.deepEqual((await createWriter({ outputDir: out, layout: 'files' }).write([file('certs/tls.crt', 'C2'), file('a', '1')])).changed, ['certs', 'certs/tls.crt']);
    assert.equal(await fs.readFile(path.join(out, 'certs', 'tls.crt'), 'utf8'), 'C2');
  });

  it('when a directory the agent made also holds a foreign file, it does not give way to a file: EEXIST, nothing removed', async () => {
    const { out, writer } = await setup('files');
    await writer.write([file('certs/tls.crt', 'C')]);
    await fs.writeFile(path.join(out, 'certs', 'foreign'), 'not ours');
    await assert.rejects(createWriter({ outputDir: out, layout: 'files' }).write([file('certs', 'FLAT')]), (e: unknown) => e instanceof WriteError && e.code === 'EEXIST');
    assert.deepEqual(await listing(path.join(out, 'certs')), ['foreign', 'tls.crt']);
  });

  it('when a planted manifest lists paths outside outputDir or reserved names, it removes none of them', async () => {
    const { out, writer } = await setup('files');
    const outside = await outsideDir();
    await fs.writeFile(path.join(out, '..manifest'), JSON.stringify({ files: [outside.sentinel, '../' + path.basename(outside.sentinel), '..data', 'x/../../y'], dirs: [outside.dir, '..'] }));
    await writer.write([file('a', '1')]);
    await outside.assertUntouched();
  });
});

describe('layout change (restart with another layout)', () => {
  it('when files becomes generations, the agent recognises its own files and directories and replaces them with the generations layout', async () => {
    const { out } = await setup('files');
    await createWriter({ outputDir: out, layout: 'files' }).write([file('db.env', 'P=1'), file('certs/tls.crt', 'C'), file('old', 'O')]);
    await fs.writeFile(path.join(out, 'foreign'), 'not ours');
    const files = [file('db.env', 'P=2'), file('certs/tls.crt', 'C2')];
    const result = await createWriter({ outputDir: out, layout: 'generations' }).write(files);
    await assertLayout(out, files, result);
    assert.deepEqual(await listing(out), [result.generation!, '..data', 'certs', 'db.env', 'foreign'].sort());
  });

  it('when generations becomes files, the agent removes ..data, its generation and its links', async () => {
    const { out } = await setup('generations');
    await createWriter({ outputDir: out, layout: 'generations' }).write([file('db.env', 'P=1'), file('certs/tls.crt', 'C'), file('old', 'O')]);
    await fs.writeFile(path.join(out, 'foreign'), 'not ours');
    await createWriter({ outputDir: out, layout: 'files' }).write([file('db.env', 'P=2'), file('certs/tls.crt', 'C2')]);
    assert.deepEqual(await listing(out), ['..manifest', 'certs', 'db.env', 'foreign']);
    assert.ok((await fs.lstat(path.join(out, 'certs'))).isDirectory());
    assert.equal(await fs.readFile(path.join(out, 'certs', 'tls.crt'), 'utf8'), 'C2');
    assert.equal(await fs.readFile(path.join(out, 'db.env'), 'utf8'), 'P=2');
  });
});
