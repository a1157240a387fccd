import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ConfigError, RenderError } from '../../../agent/errors.ts';
import { compileFiles, renderFiles, secretsUsedBy, type RenderOutcome } from '../../../agent/render/render.ts';
import { buildContext, fileScope, viewOf } from '../../../agent/render/context.ts';
import { createTemplateEngine } from '../../../agent/render/template.ts';
import type { AgentConfig, SecretValue } from '../../../agent/types.ts';
import { binaryValue, jsonValue, stringValue, testConfig } from '../../fixtures/render/config.ts';

const engine = createTemplateEngine();
const filter = (expr: string, scope: Record<string, unknown>): string => engine.parseAndRenderSync(`{{ ${expr} }}`, scope) as string;

async function render(config: AgentConfig, values: Record<string, SecretValue>): Promise<RenderOutcome> {
  return renderFiles(config, await compileFiles(config), new Map(Object.entries(values)));
}

function only(outcome: RenderOutcome): string {
  assert.deepEqual(outcome.errors.map((e) => e.message), []);
  assert.equal(outcome.files.length, 1);
  return outcome.files[0]!.content.toString('utf8');
}

function onlyError(outcome: RenderOutcome): RenderError {
  assert.equal(outcome.files.length, 0, 'expected the file to fail');
  assert.equal(outcome.errors.length, 1);
  return outcome.errors[0]!;
}

async function configError(config: AgentConfig): Promise<ConfigError> {
  try {
    await compileFiles(config);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected compileFiles to throw ConfigError');
}

describe('template context', () => {
  it('when the SecretString is a JSON object, secrets.<name> is the object, raw.<name> the exact string, meta.<name> the version', async () => {
    // Prepare
    const payload = '{ "username": "app", "port": 5432, "nested": {"a": [1, true, null]} }';
    const value = stringValue('db', payload, { versionStages: ['AWSCURRENT', 'blue'] });
    const config = testConfig({
      secrets: ['db'],
      files: [{ path: 'out', template: '{{ secrets.db.username }}|{{ secrets.db.port }}|{{ secrets.db.nested | json }}|{{ raw.db }}|{{ meta.db | json }}' }],
    });
    // Act
    const out = only(await render(config, { db: value }));
    // Assess
    const meta = { versionId: value.versionId, arn: value.arn, name: 'test/db', createdDate: '2026-01-02T03:04:05.678Z', stages: ['AWSCURRENT', 'blue'] };
    assert.equal(out, `app|5432|{"a":[1,true,null]}|${payload}|${JSON.stringify(meta)}`);
  });

  it('when the SecretString is not a JSON object (text, array, number, broken JSON), secrets.<name> is the string itself', () => {
    for (const s of ['hunter2', '[1,2]', '42', '{"a":', '  {not json}', '']) {
      const context = buildContext(['x'], new Map([['x', stringValue('x', s)]]));
      assert.equal(context.secrets.x, s, JSON.stringify(s));
      assert.equal(context.raw.x, s);
    }
    assert.equal(viewOf(stringValue('x', '{"a":')).invalidJson, true);
    assert.equal(viewOf(stringValue('x', 'plain')).invalidJson, false);
  });

  it('when the secret is binary, secrets.<name> and raw.<name> are the base64 of the bytes', () => {
    const bytes = new Uint8Array([0, 255, 1, 2, 254]);
    const context = buildContext(['bin'], new Map([['bin', binaryValue('bin', bytes)]]));
    assert.equal(context.secrets.bin, 'AP8BAv4=');
    assert.equal(context.raw.bin, 'AP8BAv4=');
  });

  it('when a file names a secret, the template also sees it as secret, raw_secret and meta_secret', async () => {
    const value = jsonValue('app', { user: 'u' });
    const config = testConfig({
      secrets: ['app'],
      files: [{ path: 'out', secret: 'app', template: '{{ secret.user }}|{{ raw_secret }}|{{ meta_secret.versionId }}' }],
    });
    assert.equal(only(await render(config, { app: value })), `u|{"user":"u"}|${value.versionId}`);
  });

  it('when a declared secret has no value, it is absent from the context', () => {
    const context = buildContext(['a', 'b'], new Map([['a', stringValue('a', 'x')]]));
    assert.deepEqual(Object.keys(context.secrets), ['a']);
    assert.equal(fileScope(context, 'b').secret, undefined);
  });

  it('parses each secret version once and shares the frozen result between files', () => {
    const value = jsonValue('db', { a: { b: 1 } });
    const first = viewOf(value);
    assert.equal(viewOf(value), first);
    assert.ok(Object.isFrozen(first.value));
    assert.ok(Object.isFrozen((first.value as { a: object }).a));
  });

  it('when a secret is named like an Object.prototype member, it is just a name', async () => {
    const config = testConfig({ secrets: ['constructor'], files: [{ path: 'out', template: '{{ secrets.constructor.v }}' }] });
    assert.equal(only(await render(config, { constructor: jsonValue('constructor', { v: 'ok' }) })), 'ok');
  });

  it('writes objects and arrays as JSON and nil as nothing', () => {
    assert.equal(filter('o', { o: { a: [1, 'x'] } }), '{"a":[1,"x"]}');
    assert.equal(filter('nil', {}), '');
  });
});

describe('the template engine', () => {
  // Intl.DateTimeFormat pages ICU data into the process (+8.2 MB RSS for an
  // idle node: `npm run bench -- --only=probes`). Liquid calls it at engine
  // creation unless a locale is given; a template that never formats a date
  // must not pay for it.
  it('when created and used for a template without dates, never asks Intl.DateTimeFormat', async () => {
    const real = Intl.DateTimeFormat;
    let calls = 0;
    Intl.DateTimeFormat = function (...args: ConstructorParameters<typeof Intl.DateTimeFormat>) {
      calls++;
      return new real(...args);
    } as unknown as typeof Intl.DateTimeFormat;
    try {
      const e = createTemplateEngine();
      assert.equal(await e.parseAndRender('{{ a | upcase }}={{ b | json }}', { a: 'x', b: [1] }), 'X=[1]');
    } finally {
      Intl.DateTimeFormat = real;
    }
    assert.equal(calls, 0);
  });
});

describe('filters', () => {
  it('json writes JSON, with an optional indent', () => {
    assert.equal(filter('v | json', { v: { a: 'b"c', n: null } }), '{"a":"b\\"c","n":null}');
    assert.equal(filter('v | json: 2', { v: [1] }), '[\n  1\n]');
    assert.equal(filter('v | json', { v: 'line\nbreak' }), '"line\\nbreak"');
  });

  it('base64_encode and base64_decode round-trip UTF-8 text', () => {
    const s = 'héllo wörld 😀 \u0000 end';
    const encoded = filter('v | base64_encode', { v: s });
    assert.equal(encoded, Buffer.from(s, 'utf8').toString('base64'));
    assert.equal(filter('v | base64_decode', { v: encoded }), s);
  });

  it('when base64_decode gets something that is not base64 or not UTF-8, the file fails with a render error, not a crash', async () => {
    const config = testConfig({
      secrets: ['s'],
      files: [
        { path: 'not-base64', template: '{{ secrets.s.a | base64_decode }}' },
        { path: 'not-utf8', template: '{{ secrets.s.b | base64_decode }}' },
        { path: 'fine', template: '{{ secrets.s.c | base64_decode }}' },
      ],
    });
    const outcome = await render(config, { s: jsonValue('s', { a: 'not base64!', b: Buffer.from([0xff, 0xfe]).toString('base64'), c: 'b2s=' }) });
    assert.deepEqual(outcome.files.map((f) => f.content.toString()), ['ok']);
    assert.match(outcome.errors[0]!.message, /^file "not-base64": config\.yaml files\[0\]\.template \(template line 1\): base64_decode: the input is not valid base64/);
    assert.match(outcome.errors[1]!.message, /^file "not-utf8": .*base64_decode: the decoded bytes are not UTF-8 text$/);
  });

  it('sha256 is the hex digest of the UTF-8 bytes', () => {
    assert.equal(filter('v | sha256', { v: 'abc' }), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('shell single-quotes, closing and reopening around a quote', () => {
    assert.equal(filter('v | shell', { v: "it's" }), "'it'\\''s'");
  });

  it('dotenv escapes \\ " $ and ` inside double quotes and keeps newlines inside the quotes', () => {
    assert.equal(filter('v | dotenv', { v: 'a"b$c`d\\e\nf' }), '"a\\"b\\$c\\`d\\\\e\nf"');
  });

  it('when dotenv or shell gets a NUL character, the file fails (no environment variable can hold it)', async () => {
    const config = testConfig({ secrets: ['s'], files: [{ path: 'a', template: '{{ raw.s | dotenv }}' }, { path: 'b', template: '{{ raw.s | shell }}' }] });
    const outcome = await render(config, { s: stringValue('s', 'a\0b') });
    assert.equal(outcome.files.length, 0);
    assert.match(outcome.errors[0]!.message, /dotenv: the value contains a NUL character/);
    assert.match(outcome.errors[1]!.message, /shell: the value contains a NUL character/);
  });

  describe('read back by a real bash', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'render-bash-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('when a dotenv file is sourced with set -a, and a shell-quoted word is evaluated, bash reads back every generated value exactly', async () => {
      // Prepare: 300 values rich in what breaks quoting, all checked by ONE bash process.
      const tricky = fc.constantFrom('"', "'", '$', '`', '\\', '\n', '\r', ' ', '\t', '$(id)', '${HOME}', '$HOME', '\\n', '#', '=', '!', '*', '~', 'é', '日本', '😀', '\u2028', '\x01', '\x7f');
      const arb = fc
        .array(fc.oneof(tricky, fc.string({ unit: 'binary', maxLength: 4 })), { maxLength: 12 })
        .map((parts) => parts.join(''))
        .filter((s) => !s.includes('\0') && s.isWellFormed());
      const seed = Date.now();
      const values = fc.sample(arb, { numRuns: 300, seed });
      const envLines = values.map((v, i) => `V${i}=${filter('v | dotenv', { v })}\n`).join('');
      const shLines = values.map((v, i) => `S${i}=${filter('v | shell', { v })}\n`).join('');
      const names = values.flatMap((_, i) => [`"$V${i}"`, `"$S${i}"`]).join(' ');
      await writeFile(join(dir, 'values.env'), envLines);
      await writeFile(join(dir, 'check.sh'), `${shLines}\nprintf '%s\\0' ${names}\n`);
      // Act
      const run = spawnSync('bash', ['-c', 'set -a; . ./values.env; . ./check.sh'], { cwd: dir, env: { PATH: process.env.PATH }, maxBuffer: 64 << 20 });
      // Assess
      assert.equal(run.status, 0, `bash failed (seed ${seed}): ${run.stderr.toString()}`);
      const got = run.stdout.toString('utf8').split('\0').slice(0, -1);
      assert.equal(got.length, values.length * 2, `seed ${seed}`);
      values.forEach((v, i) => {
        assert.equal(got[2 * i], v, `dotenv value #${i} ${JSON.stringify(v)} (seed ${seed})`);
        assert.equal(got[2 * i + 1], v, `shell value #${i} ${JSON.stringify(v)} (seed ${seed})`);
      });
    });
  });
});

describe('strict errors', () => {
  it('when a template uses an undefined variable, the error names the file, the config line, the template line and the variable', async () => {
    // Prepare: template line 1 is at config line 22.
    const config = testConfig({
      secrets: ['db'],
      lines: { 'files[0].template': 22 },
      files: [{ path: 'db.env', template: 'DB_USER={{ secrets.db.username }}\nDB_PASSWORD={{ secrets.db.pasword | dotenv }}\n' }],
    });
    // Act
    const error = onlyError(await render(config, { db: jsonValue('db', { username: 'app', password: 'x' }) }));
    // Assess
    assert.ok(error instanceof RenderError);
    assert.equal(error.file, 'db.env');
    assert.equal(error.message, 'file "db.env": config.yaml:23 (template line 2): undefined variable "secrets.db.pasword"');
  });

  it('when a templateFile uses an undefined variable, the error names the template file and its line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'render-tf-'));
    try {
      const path = join(dir, 'app.liquid');
      await writeFile(path, 'line one\n{% for k in (1..2) %}\n{{ secret.missing }}{% endfor %}\n');
      const config = testConfig({ secrets: ['app'], files: [{ path: 'app.conf', secret: 'app', templateFile: path }] });
      const error = onlyError(await render(config, { app: jsonValue('app', { present: 1 }) }));
      assert.equal(error.message, `file "app.conf": ${path}:3: undefined variable "secret.missing"`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when a computed lookup is undefined, the error shows the lookup as written, not the resolved name', async () => {
    // LiquidJS names the resolved path, which here would be secrets.db.<the password>.
    const config = testConfig({ secrets: ['db'], files: [{ path: 'x', template: '{% assign k = secrets.db.password %}\n{{ secrets.db[k].x }}' }] });
    const error = onlyError(await render(config, { db: jsonValue('db', { password: 'hunter2' }) }));
    assert.equal(error.message, 'file "x": config.yaml files[0].template (template line 2): undefined variable in "secrets.db[k].x" (a computed name; not shown, it may hold a secret value)');
    assert.equal(error.cause, undefined);
  });

  it('when the secret is not JSON, the undefined-variable error says so', async () => {
    const config = testConfig({ secrets: ['db', 'txt'], files: [{ path: 'a', template: '{{ secrets.db.password }}' }, { path: 'b', template: '{{ secrets.txt.password }}' }] });
    const outcome = await render(config, { db: stringValue('db', '{"password": oops}'), txt: stringValue('txt', 'plain') });
    assert.match(outcome.errors[0]!.message, /undefined variable "secrets\.db\.password" \(secret "db" is not valid JSON \(it starts with "\{" but does not parse\)\)$/);
    assert.match(outcome.errors[1]!.message, /undefined variable "secrets\.txt\.password" \(secret "txt" is not a JSON object\)$/);
  });

  it('when templates have an undefined filter, a syntax error, an undeclared secret or an unreadable templateFile, compileFiles lists every problem with its line', async () => {
    // Prepare
    const config = testConfig({
      secrets: ['db'],
      lines: { 'files[0].template': 10, 'files[1].template': 20, 'files[3].templateFile': 40, 'files[4].secret': 50 },
      files: [
        { path: 'a', template: 'ok\n{{ secrets.db.x | no_such_filter }}' },
        { path: 'b', template: 'ok\nok\n{% if %}' },
        { path: 'c', template: '{{ secrets.dbx.a }}{{ raw.other }}\n{{ meta.nope.arn }}{{ foo }}{{ secret.x }}{% include "x" %}' },
        { path: 'd', templateFile: '/nonexistent/secrets-agent/t.liquid' },
        { path: 'e', secret: 'undeclared' },
      ],
    });
    // Act
    const error = await configError(config);
    // Assess
    const lines = error.message.split('\n');
    assert.deepEqual(lines, [
      'config.yaml:11: files[0].template: template line 2: undefined filter: no_such_filter',
      'config.yaml:22: files[1].template: template line 3: invalid value expression: ""',
      'config.yaml: files[2].template: template line 2: tag "include" not found',
      'config.yaml:40: files[3].templateFile: cannot read template file "/nonexistent/secrets-agent/t.liquid": no such file',
      'config.yaml:50: files[4].secret: secret "undeclared" is not declared under secrets:',
    ]);
  });

  it('when templates reference undeclared secrets or unknown variables, compileFiles names each one once with its line', async () => {
    const config = testConfig({
      secrets: ['db'],
      lines: { 'files[0].template': 5 },
      files: [{ path: 'c', template: '{{ secrets.dbx.a }}{{ secrets.dbx.b }}{{ raw.other }}\n{{ meta.nope.arn }}{{ foo.bar }}{{ secret.x }}' }],
    });
    const error = await configError(config);
    assert.deepEqual(error.issues.map((i) => [i.line, i.message]), [
      [5, 'template line 1: "secrets.dbx.a" uses secret "dbx", which is not declared under secrets:'],
      [5, 'template line 1: "raw.other" uses secret "other", which is not declared under secrets:'],
      [6, 'template line 2: "meta.nope.arn" uses secret "nope", which is not declared under secrets:'],
      [6, 'template line 2: undefined variable "foo.bar" (templates see secrets, raw and meta; and secret, raw_secret and meta_secret when the file names a secret)'],
      [6, 'template line 2: "secret" is only defined when the file names a secret (add secret: <name> to files[0])'],
    ]);
  });

  it('when a templateFile has a syntax error, the issue points at the template file itself', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'render-tf-'));
    try {
      const path = join(dir, 'broken.liquid');
      await writeFile(path, 'a\nb\n{{ secrets.db.x ');
      const error = await configError(testConfig({ secrets: ['db'], files: [{ path: 'x', templateFile: path }] }));
      assert.equal(error.issues.length, 1);
      assert.equal(error.issues[0]!.file, path);
      assert.equal(error.issues[0]!.line, 3);
      assert.equal(error.issues[0]!.path, 'files[0].templateFile');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when a templateFile is unreadable, the issue says why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'render-tf-'));
    try {
      const error = await configError(testConfig({ secrets: [], files: [{ path: 'x', templateFile: dir }] }));
      assert.match(error.message, /cannot read template file ".*": it is a directory$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when a template loops without end, the file fails with a limit error instead of hanging', async () => {
    const config = testConfig({ secrets: [], files: [{ path: 'x', template: '{% for i in (1..1000000000) %}{{ i }}{% endfor %}' }] });
    const error = onlyError(await render(config, {}));
    assert.match(error.message, /limit exceeded \(/);
  });

  it('when a capture grows past the longest string the engine holds, the file fails saying so', async () => {
    const config = testConfig({ secrets: ['s'], files: [{ path: 'x', template: '{% capture c %}{% for a in secrets.s.arr %}{% for b in secrets.s.arr %}{{ raw.s }}{% endfor %}{% endfor %}{% endcapture %}{{ c | size }}' }] });
    const error = onlyError(await render(config, { s: jsonValue('s', { arr: Array.from({ length: 2000 }, (_, i) => i), pad: 'p'.repeat(4000) }) }));
    assert.match(error.message, /a string grew longer than the engine can hold/);
  });
});

describe('kind: secret files', () => {
  it('without key, writes the SecretString bytes or the SecretBinary bytes as they are', async () => {
    const bytes = new Uint8Array([0, 1, 2, 255]);
    const config = testConfig({ secrets: ['s', 'b'], files: [{ path: 's', secret: 's', mode: 0o440 }, { path: 'b', secret: 'b' }] });
    const outcome = await render(config, { s: stringValue('s', 'ünï\ncode\n'), b: binaryValue('b', bytes) });
    assert.deepEqual(outcome.errors, []);
    assert.deepEqual(outcome.files[0], { path: 's', content: Buffer.from('ünï\ncode\n'), mode: 0o440, uid: undefined, gid: undefined });
    assert.deepEqual(outcome.files[1]!.content, Buffer.from(bytes));
  });

  it('with key, writes that top-level field as ESO does (gjson String()): strings raw, JSON as stored, null as nothing', async () => {
    const payload = { private_key: '-----BEGIN KEY-----\nabc\n', port: 5432, on: true, obj: { a: 1 }, nul: null };
    const keys = ['private_key', 'port', 'on', 'obj', 'nul'];
    const config = testConfig({ secrets: ['tls'], files: keys.map((key) => ({ path: key, secret: 'tls', key })) });
    const outcome = await render(config, { tls: jsonValue('tls', payload) });
    assert.deepEqual(outcome.files.map((f) => f.content.toString()), ['-----BEGIN KEY-----\nabc\n', '5432', 'true', '{"a":1}', '']);
  });

  it('with key, a missing key, a payload that is not a JSON object or a binary secret is an error naming the secret and key', async () => {
    const config = testConfig({
      secrets: ['j', 't', 'b'],
      files: [
        { path: 'missing', secret: 'j', key: 'nope' },
        { path: 'text', secret: 't', key: 'k' },
        { path: 'binary', secret: 'b', key: 'k' },
        { path: 'proto', secret: 'j', key: 'toString' },
      ],
    });
    const outcome = await render(config, { j: jsonValue('j', { a: 1 }), t: stringValue('t', '{broken'), b: binaryValue('b', new Uint8Array([1])) });
    assert.deepEqual(outcome.errors.map((e) => e.message), [
      'file "missing": secret "j" has no top-level key "nope"',
      'file "text": secret "t" is not valid JSON (it starts with "{" but does not parse), so key "k" cannot be read',
      'file "binary": secret "b" is binary (SecretBinary) and its bytes are not JSON, so key "k" cannot be read',
      'file "proto": secret "j" has no top-level key "toString"',
    ]);
  });
});

describe('renderFiles', () => {
  it('when one file fails, every other file still renders, in config order', async () => {
    const config = testConfig({
      secrets: ['a', 'gone'],
      files: [
        { path: '1', template: '{{ secrets.a }}' },
        { path: '2', template: '{{ secrets.a.missing }}' },
        { path: '3', template: '{{ raw.gone }}' },
        { path: '4', secret: 'gone' },
        { path: '5', template: '{{ raw.a }}!' },
      ],
    });
    const outcome = await render(config, { a: stringValue('a', 'A') });
    assert.deepEqual(outcome.files.map((f) => [f.path, f.content.toString()]), [['1', 'A'], ['5', 'A!']]);
    assert.deepEqual(outcome.errors.map((e) => e.file), ['2', '3', '4']);
    assert.equal(outcome.errors[1]!.message, 'file "3": secret "gone" has no value (could not be fetched)');
  });

  it('secretsUsedBy tells which secrets each file reads, all of them for whole-map or computed access', async () => {
    const config = testConfig({
      secrets: ['a', 'b', 'c'],
      files: [
        { path: 'one', template: '{{ secrets.a.x }}{{ meta.b.arn }}' },
        { path: 'file-secret', secret: 'c', template: '{{ secret.x }}' },
        { path: 'all', template: '{{ secrets | json }}' },
        { path: 'computed', template: '{% assign n = "a" %}{{ raw[n] }}' },
        { path: 'raw', secret: 'b' },
        { path: 'none', template: 'static' },
      ],
    });
    const used = secretsUsedBy(await compileFiles(config));
    assert.deepEqual(Object.fromEntries([...used].map(([path, names]) => [path, [...names].sort()])), {
      one: ['a', 'b'],
      'file-secret': ['c'],
      all: ['a', 'b', 'c'],
      computed: ['a', 'b', 'c'],
      raw: ['b'],
      none: [],
    });
  });

  it('never puts a secret value in an error message or its cause', async () => {
    // Prepare: every way we know to make a file fail, with a canary in the payload.
    const canary = 'CANARY-4f1e9d2c';
    const config = testConfig({
      secrets: ['db', 'broken', 'bin', 'text', 'keyed'],
      files: [
        { path: 'undefined-var', template: '{{ secrets.db.pasword }}' },
        { path: 'undefined-field', template: `{{ secrets.db.password.${'x'} }}` },
        { path: 'computed', template: '{{ secrets.db[secrets.db.password] }}' },
        { path: 'computed-assign', template: '{% assign k = secrets.db.password %}{{ raw[k] }}' },
        { path: 'base64', template: '{{ secrets.db.password | base64_decode }}' },
        { path: 'entries', template: '{% assign p = secrets.db.password | entries %}' },
        { path: 'env-name', template: '{% assign p = secrets.db | entries %}{% for e in p %}{{ e[1] | env_name }}{% endfor %}' },
        { path: 'env-entries', template: '{% assign p = secrets.keyed | env_entries %}' },
        { path: 'pgpass', template: '{{ secrets.db.multiline | pgpass }}' },
        { path: 'nul', template: '{{ secrets.db.nul | dotenv }}' },
        { path: 'broken-json', template: '{{ secrets.broken.password }}' },
        { path: 'broken-json-key', secret: 'broken', key: 'password' },
        { path: 'missing-key', secret: 'db', key: 'nope' },
        { path: 'binary-key', secret: 'bin', key: 'password' },
        { path: 'text-key', secret: 'text', key: 'password' },
        { path: 'typeerror', template: '{{ secrets.db.password | split: "" | map: "x" | first | upcase }}' },
      ],
    });
    const values = {
      db: jsonValue('db', { password: canary, multiline: `${canary}\n`, nul: `${canary}\0` }),
      broken: stringValue('broken', `{"password": "${canary}"`),
      bin: binaryValue('bin', Buffer.from(canary)),
      text: stringValue('text', canary),
      // A value that is itself an object: its keys hold the canary in a long key.
      keyed: jsonValue('keyed', { [`${canary}-${'k'.repeat(64)}`]: canary }),
    };
    // Act
    const outcome = await render(config, values);
    // Assess
    const failed = outcome.errors.map((e) => e.file);
    for (const path of ['undefined-var', 'undefined-field', 'computed', 'computed-assign', 'base64', 'entries', 'env-name', 'pgpass', 'nul', 'env-entries', 'broken-json', 'broken-json-key', 'missing-key', 'binary-key', 'text-key']) {
      assert.ok(failed.includes(path), `${path} should fail`);
    }
    for (const error of outcome.errors) {
      let e: unknown = error;
      while (e instanceof Error) {
        assert.ok(!e.message.includes(canary), `canary in message of ${error.file}: ${e.message}`);
        assert.ok(!String(e.stack).includes(canary), `canary in stack of ${error.file}`);
        e = e.cause ?? (e as { originalError?: unknown }).originalError;
      }
    }
  });

  it('renders 1,000 files against 1,000 secrets', async () => {
    // Prepare
    const n = 1000;
    const names = Array.from({ length: n }, (_, i) => `s${i}`);
    const config = testConfig({
      secrets: names,
      files: names.map((name, i) => ({ path: `f${i}.env`, template: `USER={{ secrets.${name}.user }}\nPASS={{ secrets.${name}.password | dotenv }}\nV={{ meta.${name}.versionId }}\n` })),
    });
    const values = new Map(names.map((name) => [name, jsonValue(name, { user: `u-${name}`, password: `p"$${name}`, padding: 'x'.repeat(512) })]));
    // Act
    const t0 = performance.now();
    const compiled = await compileFiles(config);
    const t1 = performance.now();
    const outcome = await renderFiles(config, compiled, values);
    const t2 = performance.now();
    const again = await renderFiles(config, compiled, values);
    const t3 = performance.now();
    // Assess (no timing assertion: the machine is shared)
    console.log(`# 1000 files x 1000 secrets: compile ${(t1 - t0).toFixed(0)} ms, render ${(t2 - t1).toFixed(0)} ms, re-render ${(t3 - t2).toFixed(0)} ms`);
    assert.equal(outcome.errors.length, 0);
    assert.equal(outcome.files.length, n);
    assert.equal(outcome.files[999]!.content.toString(), `USER=u-s999\nPASS="p\\"\\$s999"\nV=${values.get('s999')!.versionId}\n`);
    assert.deepEqual(again.files.map((f) => f.content), outcome.files.map((f) => f.content));
  });
});

describe('file modes', () => {
  it('passes mode, uid and gid through', async () => {
    const config = testConfig({ secrets: [], files: [{ path: 'x', template: 'x', mode: 0o640 }] });
    const base = config.files[0]!;
    const withOwner = { ...config, files: [{ ...base, uid: 1000, gid: 2000 }] };
    const outcome = await render(withOwner, {});
    assert.deepEqual(outcome.files[0], { path: 'x', content: Buffer.from('x'), mode: 0o640, uid: 1000, gid: 2000 });
  });
});
