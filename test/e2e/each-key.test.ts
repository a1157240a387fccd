// The agent features `convert eso` relies on, at the level the user sees (the
// real CLI on the file source, real files): eachKey files that follow the
// secret's keys as they are added and removed (both layouts), explicit files
// that win over a key, decode and key as a dotted path. (refreshInterval: never
// is tested against moto, test/e2e-eso.test.ts: the file source re-reads the
// whole file on every change, a snapshot of every secret.)
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent, startAgent, type RunningAgent } from '../support/cli.ts';
import { stopAgent } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

const secrets = (api: Record<string, unknown>, once: string): string =>
  `${JSON.stringify({ api, nested: { db: { user: 'u', port: 5432 }, 'a.b': 'literal' }, b64: 'aGVsbG8=', once })}\n`;

for (const layout of ['generations', 'files'] as const) {
  describe(`eachKey on the file source (layout: ${layout})`, () => {
    let dir: string;
    let agent: RunningAgent | undefined;
    const out = (...p: string[]): string => join(dir, 'out', ...p);

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sa-each-key-'));
      await writeFile(join(dir, 'secrets.json'), secrets({ user: 'admin', password: 'p1', extra: { n: 1 } }, 'first'));
      await writeFile(
        join(dir, 'config.yaml'),
        `source: { type: file, path: secrets.json }
outputDir: out
layout: ${layout}
refresh: { interval: 200ms }
secrets:
  api: { id: api }
  nested: { id: nested }
  b64: { id: b64 }
files:
  - dir: api
    secret: api
    eachKey: true
    mode: "0440"
  - path: api/password
    template: "explicit"
  - path: db-user
    secret: nested
    key: db.user
  - path: literal
    secret: nested
    key: a.b
  - path: hello
    secret: b64
    decode: base64
server: { listen: "" }
`,
      );
      agent = startAgent(['run', '--config', join(dir, 'config.yaml')]);
      await agent.waitFor(/first render complete/);
    });

    after(async () => {
      await stopAgent(agent);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('writes one file per top-level key (strings raw, JSON as stored), an explicit file winning over the key of its path', async () => {
      assert.deepEqual((await readdir(out('api'))).sort(), ['extra', 'password', 'user']);
      assert.equal(await readOr(out('api', 'user')), 'admin');
      assert.equal(await readOr(out('api', 'extra')), '{"n":1}');
      assert.equal(await readOr(out('api', 'password')), 'explicit');
      assert.equal((await lstat(out('api', 'user'))).mode & 0o777, 0o440);
    });

    it('key: the literal key first, then the dotted path; decode: base64', async () => {
      assert.equal(await readOr(out('db-user')), 'u');
      assert.equal(await readOr(out('literal')), 'literal');
      assert.equal(await readOr(out('hello')), 'hello');
    });

    it('when keys are added and removed in the secret, the files follow (and vanish when the secret has none)', async () => {
      await writeFile(join(dir, 'secrets.json'), secrets({ user: 'admin', token: 't' }, 'second'));
      await waitUntil('the new key', async () => (await readOr(out('api', 'token'))) === 't');
      await waitUntil('the removed key gone', async () => !(await readdir(out('api'))).includes('extra'));
      assert.deepEqual((await readdir(out('api'))).sort(), ['password', 'token', 'user']);
      await writeFile(join(dir, 'secrets.json'), secrets({}, 'third'));
      await waitUntil('every key gone', async () => (await readdir(out('api'))).join() === 'password');
    });
  });
}

describe('eachKey render errors', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-each-key-bad-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('when a key is not a safe file name, init fails naming the key, never the value', async () => {
    await writeFile(join(dir, 'secrets.json'), JSON.stringify({ api: { ok: 'v', '../escape': 'CANARY-VALUE', '.hidden': 'CANARY-VALUE' } }));
    await writeFile(join(dir, 'config.yaml'), 'source: { type: file, path: secrets.json }\noutputDir: out\nsecrets: { api: { id: api } }\nfiles:\n  - { dir: ., secret: api, eachKey: true }\nserver: { listen: "" }\n');
    const r = await runAgent(['init', '--config', join(dir, 'config.yaml'), '--timeout', '5s']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /has keys that cannot be file names: \\"\.\.\/escape\\", \\"\.hidden\\"/);
    assert.doesNotMatch(r.stdout + r.stderr, /CANARY-VALUE/);
  });

  it('validate rejects eachKey without dir, dir without eachKey, a file where the dir goes, and decode with a template', async () => {
    await writeFile(
      join(dir, 'bad.yaml'),
      'outputDir: out\nsecrets: { a: { id: a } }\nfiles:\n  - { path: x, secret: a, eachKey: true }\n  - { dir: d, secret: a }\n  - { path: d, secret: a }\n  - { path: t, template: "x", secret: a, decode: base64 }\n',
    );
    const r = await runAgent(['validate', '--config', join(dir, 'bad.yaml')]);
    assert.equal(r.code, 2, r.stderr);
    for (const m of [
      /:4: files\[0\]\.eachKey: needs dir/,
      /:5: files\[1\]\.dir: needs eachKey: true/,
      /:6: files\[2\]\.path: \\"d\\" is a file, but files\[1\] writes one file per key/,
      /:7: files\[3\]\.decode: not allowed with a template/,
    ]) assert.match(r.stderr, m);
  });
});
