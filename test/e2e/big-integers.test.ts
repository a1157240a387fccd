// Integers beyond 2^53 in a JSON secret, as a user meets them: the real `init`
// (file source: no AWS needed) writes them with the exact digits stored, by a
// template and by `key:` alike; arithmetic on one fails the file saying why.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runAgent } from '../support/cli.ts';

const STORED = '{"big":12345678901234567890123,"neg":-9007199254740993,"edge":9007199254740993,"small":42,"float":1.5,"nested":{"id":98765432109876543210}}';

describe('integers beyond 2^53', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-e2e-bigint-'));
    await writeFile(join(dir, 'secrets.yaml'), `db: '${STORED}'\n`);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('when a template and key: read them, both write the exact digits, and | json writes the object as stored', async () => {
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out
secrets:
  db: { id: db }
files:
  - { path: t-big, template: "{{ secrets.db.big }}" }
  - { path: k-big, secret: db, key: big }
  - { path: t-neg, template: "{{ secrets.db.neg }}" }
  - { path: k-neg, secret: db, key: neg }
  - { path: t-edge, template: "{{ secrets.db.edge }}" }
  - { path: k-edge, secret: db, key: edge }
  - { path: t-nested, template: "{{ secrets.db.nested.id }}" }
  - { path: k-nested, secret: db, key: nested.id }
  - { path: t-small, template: "{{ secrets.db.small | plus: 1 }} {{ secrets.db.float }}" }
  - { path: json, template: "{{ secrets.db | json }}" }
`,
    );
    const r = await runAgent(['init', '--config', 'config.yaml'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const read = (f: string): Promise<string> => readFile(join(dir, 'out', f), 'utf8');
    for (const [name, want] of [['big', '12345678901234567890123'], ['neg', '-9007199254740993'], ['edge', '9007199254740993'], ['nested', '98765432109876543210']]) {
      assert.equal(await read(`t-${name}`), want, `template, ${name}`);
      assert.equal(await read(`k-${name}`), want, `key:, ${name}`);
    }
    assert.equal(await read('t-small'), '43 1.5');
    assert.equal(await read('json'), STORED);
  });

  it('when a template computes with one, the file fails saying why instead of writing a rounded number', async () => {
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out2
secrets:
  db: { id: db }
files:
  - { path: sum, template: "{{ secrets.db.big | plus: 1 }}" }
`,
    );
    const r = await runAgent(['init', '--config', 'config.yaml', '--log-format', 'text'], { cwd: dir });
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.match(r.stderr + r.stdout, /file "sum": .*config\.yaml:6 \(template line 1\): plus: an integer beyond 2\^53 cannot be computed with exactly/);
  });
});
