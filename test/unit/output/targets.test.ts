// TargetsWriter (agent/output/targets.ts): each target is its own root, with
// its own ..data generation (or ..manifest) and its own lock; a rotation in
// one target swaps only that target's generation.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createWriter } from '../../../agent/output/index.ts';
import { WriteError } from '../../../agent/errors.ts';
import type { RenderedFile } from '../../../agent/types.ts';

const tempDirs: string[] = [];
after(async () => {
  for (const d of tempDirs) await fs.rm(d, { recursive: true, force: true });
});

async function outDir(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'targets-test-'));
  tempDirs.push(d);
  return path.join(d, 'out');
}

function file(p: string, content: string, mode = 0o400): RenderedFile {
  return { path: p, content: Buffer.from(content), mode };
}

describe('targets (generations layout)', () => {
  it('writes each target as its own root: own ..data, own lock, links inside the target, nothing at the top but the target dirs', async () => {
    const out = await outDir();
    const writer = createWriter({ outputDir: out, layout: 'generations', targets: ['db-creds', 'api-keys'] });
    await writer.prepare();
    const r = await writer.write([file('db-creds/DB_PASSWORD', 'pw1'), file('api-keys/TOKEN', 'tok1'), file('api-keys/sub/x', 'x')]);
    assert.deepEqual(r.changed, ['api-keys/TOKEN', 'api-keys/sub/x', 'db-creds/DB_PASSWORD']);
    assert.equal(r.generation, undefined);
    assert.deepEqual(r.targets?.map((t) => t.target), ['db-creds', 'api-keys'], 'written in the order of targets');
    assert.deepEqual((await fs.readdir(out)).sort(), ['api-keys', 'db-creds']);
    for (const t of ['db-creds', 'api-keys']) {
      const dir = path.join(out, t);
      assert.ok((await fs.lstat(dir)).isDirectory() && !(await fs.lstat(dir)).isSymbolicLink(), `${t} is a real directory`);
      assert.match(await fs.readlink(path.join(dir, '..data')), /^\.\.\d{4}_/);
      assert.ok((await fs.lstat(path.join(dir, '..lock'))).isFile(), `${t} has its own lock`);
    }
    assert.equal(await fs.readlink(path.join(out, 'db-creds', 'DB_PASSWORD')), '..data/DB_PASSWORD');
    assert.equal(await fs.readFile(path.join(out, 'db-creds', 'DB_PASSWORD'), 'utf8'), 'pw1');
    assert.equal(await fs.readFile(path.join(out, 'api-keys', 'sub', 'x'), 'utf8'), 'x');
  });

  it('a change in one target swaps only its generation; the other keeps its generation and its directory inode', async () => {
    const out = await outDir();
    const writer = createWriter({ outputDir: out, layout: 'generations', targets: ['db-creds', 'api-keys'] });
    await writer.prepare();
    const first = await writer.write([file('db-creds/DB_PASSWORD', 'pw1'), file('api-keys/TOKEN', 'tok1')]);
    const dbIno = (await fs.stat(path.join(out, 'db-creds'))).ino;
    const apiGen = await fs.readlink(path.join(out, 'api-keys', '..data'));
    const second = await writer.write([file('db-creds/DB_PASSWORD', 'pw2'), file('api-keys/TOKEN', 'tok1')]);
    assert.deepEqual(second.changed, ['db-creds/DB_PASSWORD']);
    assert.equal(await fs.readlink(path.join(out, 'api-keys', '..data')), apiGen, 'api-keys untouched');
    assert.notEqual(second.targets?.[0]?.generation, first.targets?.[0]?.generation, 'db-creds has a new generation');
    assert.equal((await fs.stat(path.join(out, 'db-creds'))).ino, dbIno, 'the target directory itself is never replaced (a subPath mount of it stays valid)');
    assert.equal(await fs.readFile(path.join(out, 'db-creds', 'DB_PASSWORD'), 'utf8'), 'pw2');
    const third = await writer.write([file('db-creds/DB_PASSWORD', 'pw2'), file('api-keys/TOKEN', 'tok1')]);
    assert.deepEqual(third.changed, [], 'nothing differs: nothing written');
  });

  it('a file dropped from one target is removed from it, and a target with no file left is emptied', async () => {
    const out = await outDir();
    const writer = createWriter({ outputDir: out, layout: 'generations', targets: ['a', 'b'] });
    await writer.prepare();
    await writer.write([file('a/one', '1'), file('a/two', '2'), file('b/x', 'x')]);
    const r = await writer.write([file('a/one', '1')]);
    assert.deepEqual(r.changed, ['a/two', 'b/x']);
    assert.deepEqual((await fs.readdir(path.join(out, 'a'))).filter((n) => !n.startsWith('..')), ['one']);
    assert.deepEqual((await fs.readdir(path.join(out, 'b'))).filter((n) => !n.startsWith('..')), []);
  });

  it('rejects a file under no target before touching anything', async () => {
    const out = await outDir();
    const writer = createWriter({ outputDir: out, layout: 'generations', targets: ['a'] });
    await writer.prepare();
    await assert.rejects(writer.write([file('a/ok', '1'), file('stray', '2')]), (e: unknown) => e instanceof WriteError && e.code === 'UNSAFE_PATH' && /"stray".*under none of the targets \("a"\)/.test(e.message));
    assert.deepEqual((await fs.readdir(path.join(out, 'a'))).filter((n) => n !== '..lock'), []);
  });

  it('when a later target fails, the error names the targets already written, and the next write still reports their changes', async () => {
    const out = await outDir();
    const writer = createWriter({ outputDir: out, layout: 'generations', targets: ['a', 'b'] });
    await writer.prepare();
    await writer.write([file('a/k', '1'), file('b/k', '1')]);
    // A foreign directory where b's link must go: b cannot be written.
    await fs.mkdir(path.join(out, 'b', 'new'));
    await assert.rejects(writer.write([file('a/k', '2'), file('b/k', '1'), file('b/new', 'n')]), (e: unknown) => e instanceof WriteError && /targets "a" were already written/.test(e.message));
    assert.equal(await fs.readFile(path.join(out, 'a', 'k'), 'utf8'), '2');
    await fs.rmdir(path.join(out, 'b', 'new'));
    const r = await writer.write([file('a/k', '2'), file('b/k', '1'), file('b/new', 'n')]);
    assert.deepEqual(r.changed, ['a/k', 'b/new'], 'a/k changed in the failed write: still reported, so its consumers are notified');
  });

  it('replaces the link a generations layout rooted at outputDir left where a target goes', async () => {
    const out = await outDir();
    const root = createWriter({ outputDir: out, layout: 'generations' });
    await root.prepare();
    await root.write([file('db/k', 'old')]);
    assert.ok((await fs.lstat(path.join(out, 'db'))).isSymbolicLink());
    const writer = createWriter({ outputDir: out, layout: 'generations', targets: ['db'] });
    await writer.prepare();
    await writer.write([file('db/k', 'new')]);
    assert.ok((await fs.lstat(path.join(out, 'db'))).isDirectory());
    assert.equal(await fs.readFile(path.join(out, 'db', 'k'), 'utf8'), 'new');
  });
});

describe('targets (files layout)', () => {
  it('each target keeps its own ..manifest and plain files', async () => {
    const out = await outDir();
    const writer = createWriter({ outputDir: out, layout: 'files', targets: ['a', 'b'] });
    await writer.prepare();
    await writer.write([file('a/k', '1'), file('b/k', '1')]);
    for (const t of ['a', 'b']) {
      assert.ok((await fs.lstat(path.join(out, t, '..manifest'))).isFile());
      assert.ok((await fs.lstat(path.join(out, t, 'k'))).isFile());
    }
    const r = await writer.write([file('a/k', '1'), file('b/k', '2')]);
    assert.deepEqual(r.changed, ['b/k']);
  });
});
