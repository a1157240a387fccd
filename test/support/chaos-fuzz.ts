// Generated bad input for the agent (fast-check arbitraries), and a client for
// the in-process worker (chaos-fuzz-worker.ts) that runs agent/cli/index.ts's main().
//
// Every generated case is invalid by construction: one or more mutations of a
// valid configuration, each of which alone makes it invalid (an unknown key, a
// value of the wrong type or out of range, an unsafe path, a reference to
// nothing, a template that cannot compile), or a document that is not a
// configuration at all (broken YAML/JSON, random bytes, nesting and alias
// bombs). The agent must answer each with exit 2 and a message.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseDuration } from '../../agent/config/index.ts';

export interface BadCase {
  /** What was done, for the report of a failing case. */
  readonly kind: string;
  /** Which generators made it (wrong type, unknown key, bad value, template, broken YAML, truncated JSON, garbage). */
  readonly families: readonly string[];
  /** The config file's bytes. */
  readonly config: string | Uint8Array;
  /** Template files next to it (relative name -> text). */
  readonly templates: Readonly<Record<string, string>>;
}

type Doc = Record<string, unknown>;

/** A valid configuration (validate accepts it: checked by the suite). */
export function validDoc(): Doc {
  return {
    source: { type: 'file', path: 'secrets.yaml' },
    outputDir: 'out',
    refresh: { interval: '5m', jitter: 0.2, rotationAware: true },
    secrets: { db: { id: 'app/db' }, tls: { id: 'app/tls', versionStage: 'AWSCURRENT' } },
    files: [
      { path: 'db.env', template: 'PASSWORD={{ secrets.db.password | dotenv }}', mode: '0440' },
      { path: 'tls.crt', secret: 'tls', key: 'cert' },
      { path: 'conf/app.properties', templateFile: 'tpl/app.liquid' },
    ],
    notify: [{ signal: 'SIGHUP', pidFile: 'app.pid' }],
    server: { listen: '127.0.0.1:0' },
  };
}

export const VALID_TEMPLATE = 'user={{ secrets.db.username }}\n';

/** YAML text without line folding, so every inserted line stays outside any scalar. */
export function yamlText(doc: Doc): string {
  return stringify(doc, { lineWidth: 0, minContentWidth: 0 });
}

// ---- values of the wrong type ----

type Kind = 'string' | 'number' | 'boolean' | 'object' | 'array';

const notA = (kind: Kind): fc.Arbitrary<unknown> => {
  const all: Record<Kind, fc.Arbitrary<unknown>> = {
    string: fc.string({ minLength: 1, maxLength: 8 }).map((s) => `${s}`),
    number: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
    boolean: fc.boolean(),
    object: fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), fc.integer(), { minKeys: 1, maxKeys: 3 }),
    array: fc.array(fc.integer(), { minLength: 0, maxLength: 3 }),
  };
  const others = (Object.keys(all) as Kind[]).filter((k) => k !== kind);
  return fc.oneof(...others.map((k) => all[k]), fc.constant(null));
};

/** [key path, expected kind] of every typed leaf and branch in validDoc(). */
const TYPED: readonly [readonly (string | number)[], Kind][] = [
  [['source'], 'object'],
  [['source', 'type'], 'string'],
  [['source', 'path'], 'string'],
  [['outputDir'], 'string'],
  [['refresh'], 'object'],
  [['refresh', 'interval'], 'string'],
  [['refresh', 'jitter'], 'number'],
  [['refresh', 'rotationAware'], 'boolean'],
  [['secrets'], 'object'],
  [['secrets', 'db'], 'object'],
  [['secrets', 'db', 'id'], 'string'],
  [['secrets', 'tls', 'versionStage'], 'string'],
  [['files'], 'array'],
  [['files', 0], 'object'],
  [['files', 0, 'path'], 'string'],
  [['files', 0, 'template'], 'string'],
  [['files', 0, 'mode'], 'string'],
  [['files', 1, 'secret'], 'string'],
  [['files', 1, 'key'], 'string'],
  [['files', 2, 'templateFile'], 'string'],
  [['notify'], 'array'],
  [['notify', 0], 'object'],
  [['notify', 0, 'signal'], 'string'],
  [['notify', 0, 'pidFile'], 'string'],
  [['server'], 'object'],
  [['server', 'listen'], 'string'],
];

function setAt(doc: Doc, path: readonly (string | number)[], value: unknown): void {
  let o = doc as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  o[path[path.length - 1]!] = value;
}

function getAt(doc: Doc, path: readonly (string | number)[]): Record<string | number, unknown> {
  let o = doc as Record<string | number, unknown>;
  for (const k of path) o = o[k] as Record<string | number, unknown>;
  return o;
}

type Mutation = { kind: string; family?: string; apply: (doc: Doc, templates: Record<string, string>) => void };
const family = (name: string) => (m: Mutation): Mutation => ({ ...m, family: name });

const wrongType: fc.Arbitrary<Mutation> = fc
  .constantFrom(...TYPED)
  .chain(([path, kind]) =>
    notA(kind)
      // An empty array where a list is expected is the right type; `notify: []` is even valid.
      .filter((v) => !(kind === 'array' && Array.isArray(v)))
      .map((v) => ({ kind: `wrong type at ${path.join('.')}`, apply: (d: Doc) => setAt(d, path, v) })),
  );

const KNOWN = new Map<string, readonly string[]>([
  ['', ['$schema', 'source', 'outputDir', 'layout', 'refresh', 'secrets', 'files', 'notify', 'server']],
  ['source', ['type', 'region', 'assumeRoleArn', 'path']],
  ['refresh', ['interval', 'jitter', 'rotationAware']],
  ['secrets.db', ['id', 'versionStage', 'versionId', 'refreshInterval']],
  ['files.0', ['path', 'template', 'templateFile', 'secret', 'key', 'mode', 'uid', 'gid']],
  ['notify.0', ['signal', 'process', 'pidFile', 'exec', 'http', 'timeout', 'splay', 'files', 'name']],
  ['server', ['listen']],
]);

const unknownKey: fc.Arbitrary<Mutation> = fc
  .tuple(
    fc.constantFrom(...KNOWN.keys()),
    fc.oneof(fc.string({ minLength: 0, maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'Files', 'output_dir', 'secret', 'interval')),
    fc.jsonValue({ maxDepth: 2 }),
  )
  .filter(([at, key]) => !KNOWN.get(at)!.includes(key))
  .map(([at, key, value]) => ({
    kind: `unknown key ${JSON.stringify(key)} at ${at || 'top level'}`,
    apply: (d: Doc) => {
      const o = at === '' ? d : getAt(d, at.split('.').map((k) => (/^\d+$/.test(k) ? Number(k) : k)));
      Object.defineProperty(o, key, { value, enumerable: true, configurable: true, writable: true });
    },
  }));

const isDuration = (s: string, minMs: number): boolean => {
  const ms = parseDuration(s);
  return ms !== undefined && ms >= minMs && ms <= 168 * 3_600_000;
};

const badDuration = fc.oneof(
  fc.constantFrom('', '0', '5', '1ms', '9ms', '5 m', '-1s', '1y', '1.5.5s', 'PT5M', '5mins', '169h', '999999999h', '1e3s', '∞', '5m ', ' 5m'),
  fc.string({ maxLength: 10 }).filter((s) => !isDuration(s, 10)),
);
const unsafePath = fc.oneof(
  fc.constantFrom('', '/', '/etc/passwd', '../x', 'a/../../x', '..', '.', './x', '..data', '..data/x', '..2020_01_01_00_00_00.000000000', '.hidden', 'a//b', 'a/', 'a\\b', 'a b', 'x\0y', 'é', 'a*', `${'n'.repeat(256)}`),
  fc
    .tuple(fc.array(fc.stringMatching(/^[a-z0-9_-]{1,6}$/), { maxLength: 3 }), fc.constantFrom('..', '.', '', '.x', 'a b', '*', '\\', '..x', '$HOME', '~'), fc.array(fc.stringMatching(/^[a-z0-9_-]{1,6}$/), { maxLength: 3 }))
    .map(([a, bad, b]) => [...a, bad, ...b].join('/')),
);

const badValue: fc.Arbitrary<Mutation> = fc.oneof(
  badDuration.map((v) => ({ kind: `refresh.interval ${JSON.stringify(v)}`, apply: (d: Doc) => setAt(d, ['refresh', 'interval'], v) })),
  badDuration.map((v) => ({ kind: `secrets.db.refreshInterval ${JSON.stringify(v)}`, apply: (d: Doc) => setAt(d, ['secrets', 'db', 'refreshInterval'], v) })),
  fc
    .oneof(fc.double({ min: 0.9000001, noNaN: true }), fc.double({ max: -0.0000001, noNaN: true }), fc.constant(Number.NaN))
    .map((v) => ({ kind: `refresh.jitter ${v}`, apply: (d: Doc) => setAt(d, ['refresh', 'jitter'], v) })),
  fc
    .oneof(fc.constantFrom('0999', '0o644', '800', 'rwx', '4755', '0200', '0000', '', '0x1ff', '1777', '07777'), fc.string({ maxLength: 5 }).filter((s) => !/^0?[4-7][0-7]{2}$/.test(s)))
    .map((v) => ({ kind: `files[0].mode ${JSON.stringify(v)}`, apply: (d: Doc) => setAt(d, ['files', 0, 'mode'], v) })),
  fc
    .oneof(fc.constantFrom(-1, 1.5, 2 ** 32, 4_294_967_295, Number.MAX_SAFE_INTEGER), fc.integer({ max: -1 }))
    .chain((v) => fc.constantFrom('uid', 'gid').map((k) => ({ kind: `files[0].${k} ${v}`, apply: (d: Doc) => setAt(d, ['files', 0, k], v) }))),
  unsafePath.chain((p) => fc.integer({ min: 0, max: 2 }).map((i) => ({ kind: `files[${i}].path ${JSON.stringify(p)}`, apply: (d: Doc) => setAt(d, ['files', i, 'path'], p) }))),
  fc
    .constantFrom('1db', '-x', 'a b', 'x'.repeat(64), 'é', 'a.b', '', 'db!', '$db')
    .map((name) => ({ kind: `secret name ${JSON.stringify(name)}`, apply: (d: Doc) => ((d.secrets as Doc)[name] = { id: 'x/y' }) })),
  fc.constantFrom('', 'x'.repeat(2049)).map((id) => ({ kind: `secrets.db.id of length ${id.length}`, apply: (d: Doc) => setAt(d, ['secrets', 'db', 'id'], id) })),
  fc
    .oneof(fc.constantFrom('abc', 'not-a-uuid', 'x'.repeat(65), '0123456789abcdef0123456789abcde', 'EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE!'), fc.string({ maxLength: 31 }))
    .filter((v) => !/^[A-Za-z0-9-]{32,64}$/.test(v))
    .map((v) => ({ kind: `versionId ${JSON.stringify(v)}`, apply: (d: Doc) => setAt(d, ['secrets', 'db', 'versionId'], v) })),
  fc.constant({ kind: 'versionId with versionStage', apply: (d: Doc) => setAt(d, ['secrets', 'tls', 'versionId'], 'a1b2c3d4-5678-90ab-cdef-EXAMPLE11111') }),
  fc
    .string({ maxLength: 8 })
    .filter((t) => t !== 'aws' && t !== 'file')
    .map((t) => ({ kind: `source.type ${JSON.stringify(t)}`, apply: (d: Doc) => setAt(d, ['source', 'type'], t) })),
  fc.constant({ kind: 'file source without path', apply: (d: Doc) => delete (d.source as Doc).path }),
  fc.constantFrom('us_east_1', 'US-EAST-1', 'east', '', 'us-east-1a').map((r) => ({ kind: `source.region ${JSON.stringify(r)}`, apply: (d: Doc) => (d.source = { type: 'aws', region: r }) })),
  fc.constantFrom('arn:aws:iam::1:role/x', 'role/x', '', 'arn:aws:iam::123456789012:user/x').map((a) => ({ kind: `assumeRoleArn ${JSON.stringify(a)}`, apply: (d: Doc) => (d.source = { type: 'aws', assumeRoleArn: a }) })),
  fc.constantFrom('', '/', '///').map((o) => ({ kind: `outputDir ${JSON.stringify(o)}`, apply: (d: Doc) => (d.outputDir = o) })),
  fc.constantFrom('generation', 'file', '', 'GENERATIONS').map((l) => ({ kind: `layout ${JSON.stringify(l)}`, apply: (d: Doc) => (d.layout = l) })),
  fc.constantFrom('abc', '1.2.3.4', ':99999', 'host:port', '127.0.0.1', '[::1]', 'localhost:-1', '0.0.0.0:65536').map((l) => ({ kind: `server.listen ${JSON.stringify(l)}`, apply: (d: Doc) => setAt(d, ['server', 'listen'], l) })),
  fc.constantFrom('SIGFOO', 'HUP HUP', '', '9', 'SIG', 'sig-hup').map((s) => ({ kind: `notify signal ${JSON.stringify(s)}`, apply: (d: Doc) => setAt(d, ['notify', 0, 'signal'], s) })),
  fc
    .constantFrom<Doc>(
      {},
      { signal: 'SIGHUP' },
      { exec: [] },
      { exec: [''] },
      { http: 'ftp://x' },
      { http: 'http://' },
      { http: 'not a url' },
      { signal: 'SIGHUP', exec: ['/bin/true'] },
      { exec: ['/bin/true'], http: 'http://127.0.0.1/' },
      { process: 'nginx' },
      { exec: ['/bin/true'], timeout: 'soon' },
      { exec: ['/bin/true'], files: [] },
      { exec: ['/bin/true'], files: ['no-such-file'] },
      { signal: 'SIGHUP', process: 'nginx', timeout: '5s' },
    )
    .map((n) => ({ kind: `notify target ${JSON.stringify(n)}`, apply: (d: Doc) => (d.notify = [n]) })),
  fc.constant({ kind: 'files: []', apply: (d: Doc) => (d.files = []) }),
  fc.constant({ kind: 'no files key', apply: (d: Doc) => delete d.files }),
  fc.constant({ kind: 'no outputDir key', apply: (d: Doc) => delete d.outputDir }),
  fc.constant({ kind: 'template and templateFile', apply: (d: Doc) => setAt(d, ['files', 2, 'template'], 'x') }),
  fc.constant({ kind: 'file without content', apply: (d: Doc) => (d.files = [{ path: 'x' }]) }),
  fc.constant({ kind: 'key without secret', apply: (d: Doc) => (d.files = [{ path: 'x', key: 'k', template: 'x' }]) }),
  fc.constantFrom('nosuch', 'DB', 'db ', '').map((s) => ({ kind: `file secret ${JSON.stringify(s)} not declared`, apply: (d: Doc) => setAt(d, ['files', 1, 'secret'], s) })),
  fc.constant({ kind: 'duplicate path', apply: (d: Doc) => setAt(d, ['files', 1, 'path'], 'db.env') }),
  fc.constant({ kind: 'file and directory', apply: (d: Doc) => setAt(d, ['files', 1, 'path'], 'conf') }),
  fc.constant({ kind: 'templateFile missing', apply: (d: Doc) => setAt(d, ['files', 2, 'templateFile'], 'tpl/missing.liquid') }),
  fc.constant({ kind: 'templateFile is a directory', apply: (d: Doc) => setAt(d, ['files', 2, 'templateFile'], 'tpl') }),
);

// ---- templates ----

/**
 * Fragments that make any template invalid, whatever text without braces or %
 * surrounds them, and whichever others join them (so no closing tag that
 * another fragment opens validly: `{% for i in (1..3) %}` has no `{% endfor %}`
 * here). LiquidJS itself accepts a few odd ones, e.g. `{{ x | }}`,
 * `{% increment %}` or `{{ secrets. }}`: those are not listed.
 */
const BAD_FRAGMENTS = [
  '{{',
  '{{ x',
  '{% if x %}',
  '{% endif %}',
  '{% for %}',
  '{% for i in %}{% endfor %}',
  '{{ nope }}',
  '{{ secrets.nosuch.x }}',
  '{{ raw.nosuch }}',
  '{{ meta.nosuch.versionId }}',
  '{{ secret }}',
  '{{ raw_secret }}',
  '{{ secrets.db.password | nofilter }}',
  '{% include "x" %}',
  '{% render "x" %}',
  '{% layout "x" %}',
  '{% block a %}{% endblock %}',
  '{% unknowntag %}',
  '{% raw %}',
  '{% comment %}',
  '{{ "unterminated }}',
  '{% assign %}',
  '{% case %}',
  '{% for i in (1..3) %}',
  '{% else %}',
  '{% capture %}{% endcapture %}',
  '{% tablerow %}',
  '{{ .x }}',
  '{{ secrets[ }}',
];

const filler = fc.string({ maxLength: 12 }).map((s) => s.replace(/[{}%]/g, ''));

const badTemplate: fc.Arbitrary<string> = fc
  .tuple(filler, fc.array(fc.constantFrom(...BAD_FRAGMENTS), { minLength: 1, maxLength: 3 }), filler, fc.constantFrom('', '{{ secrets.db.password }}', '\n'))
  .map(([pre, bad, post, good]) => `${pre}${good}${bad.join(post)}${post}`);

const templateMutation: fc.Arbitrary<Mutation> = fc.oneof(
  badTemplate.map((t) => ({ kind: `inline template ${JSON.stringify(t)}`, apply: (d: Doc) => setAt(d, ['files', 0, 'template'], t) })),
  badTemplate.map((t) => ({
    kind: `templateFile ${JSON.stringify(t)}`,
    apply: (_d: Doc, templates: Record<string, string>) => (templates['tpl/app.liquid'] = t),
  })),
);

// ---- whole documents ----

/** Lines that break any YAML document they are inserted into at a line boundary (outside scalars). */
const BREAKERS = [
  ']',
  '}',
  'outputDir: [unclosed',
  'bad: {a: 1',
  '\tfiles: x',
  'outputDir: again',
  'x: *nope',
  '- item',
  'key: "\\q"',
  '  : ',
  'a: b: c',
  '%YAML 9.9',
  '? [',
  '"unterminated: x',
];

const brokenYaml: fc.Arbitrary<BadCase> = fc
  .tuple(fc.constantFrom(...BREAKERS), fc.nat())
  .map(([line, at]) => {
    const lines = yamlText(validDoc()).split('\n');
    const i = at % (lines.length + 1);
    return { kind: `YAML with ${JSON.stringify(line)} at line ${i + 1}`, families: ['broken YAML'], config: [...lines.slice(0, i), line, ...lines.slice(i)].join('\n'), templates: { 'tpl/app.liquid': VALID_TEMPLATE } };
  });

const truncatedJson: fc.Arbitrary<BadCase> = fc.nat().map((n) => {
  const text = JSON.stringify(validDoc(), null, 1);
  const cut = n % (text.length - 1);
  return { kind: `JSON cut at ${cut}`, families: ['truncated JSON'], config: text.slice(0, cut), templates: { 'tpl/app.liquid': VALID_TEMPLATE } };
});

const garbage: fc.Arbitrary<BadCase> = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 200 }).map((b) => ({ kind: `${b.length} random bytes`, config: b, families: ['garbage'], templates: {} })),
  fc.string({ unit: 'binary', maxLength: 120 }).map((s) => ({ kind: `random text ${JSON.stringify(s.slice(0, 20))}`, config: s, families: ['garbage'], templates: {} })),
  fc.constantFrom('', '\n', '# only a comment\n', '---\n', '---\n...\n', 'null', '~', '[]', '"a string"', '42', 'true', '---\na: 1\n---\nb: 2\n', '\uFEFF', '\0').map((t) => ({ kind: `document ${JSON.stringify(t)}`, config: t, families: ['garbage'], templates: {} })),
  fc.integer({ min: 100, max: 20_000 }).map((n) => ({ kind: `${n} nested sequences`, config: '['.repeat(n) + ']'.repeat(n), families: ['garbage'], templates: {} })),
  fc.integer({ min: 100, max: 20_000 }).map((n) => ({ kind: `${n} unclosed flow mappings`, config: '{a: '.repeat(n), families: ['garbage'], templates: {} })),
  fc.integer({ min: 50, max: 2000 }).map((n) => ({ kind: `${n} nested block mappings`, config: Array.from({ length: n }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' 1\n', families: ['garbage'], templates: {} })),
  fc.integer({ min: 3, max: 12 }).map((n) => {
    // Billion laughs: each level references the previous one nine times.
    const lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < n; i++) lines.push(`l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(',')}]`);
    return { kind: `alias bomb of ${n} levels`, config: lines.join('\n') + '\n', families: ['garbage'], templates: {} };
  }),
  fc.integer({ min: 1, max: 8 }).map((mb) => ({ kind: `${mb} MiB value of an unknown key`, config: yamlText({ ...validDoc(), junk: 'x'.repeat(mb * 1024 * 1024) }), families: ['garbage'], templates: { 'tpl/app.liquid': VALID_TEMPLATE } })),
);

/** A valid document with one to three mutations, each of which makes it invalid. */
const mutated: fc.Arbitrary<BadCase> = fc
  .array(
    fc.oneof(
      { arbitrary: wrongType.map(family('wrong type')), weight: 3 },
      { arbitrary: unknownKey.map(family('unknown key')), weight: 2 },
      { arbitrary: badValue.map(family('bad value')), weight: 5 },
      { arbitrary: templateMutation.map(family('template')), weight: 4 },
    ),
    { minLength: 1, maxLength: 3 },
  )
  .chain((ms) =>
    fc.constantFrom('yaml', 'json').map((format) => {
      const doc = validDoc();
      const templates: Record<string, string> = { 'tpl/app.liquid': VALID_TEMPLATE };
      for (const m of ms) {
        try {
          m.apply(doc, templates);
        } catch {
          // An earlier mutation replaced the branch this one edits (e.g. files is now a string):
          // the document is invalid already.
        }
      }
      return { kind: ms.map((m) => m.kind).join(' + ') + ` (${format})`, families: [...new Set(ms.map((m) => m.family ?? 'bad value'))], config: format === 'json' ? JSON.stringify(doc) : yamlText(doc), templates };
    }),
  );

export const badCase: fc.Arbitrary<BadCase> = fc.oneof(
  { arbitrary: mutated, weight: 14 },
  { arbitrary: brokenYaml, weight: 2 },
  { arbitrary: truncatedJson, weight: 1 },
  { arbitrary: garbage, weight: 2 },
);

// ---- the worker ----

export interface MainResult {
  code: number | undefined;
  threw: string | undefined;
  stdout: string;
  stderr: string;
}

export interface FuzzWorker {
  call(args: readonly string[]): Promise<MainResult>;
  close(): Promise<void>;
}

const WORKER = fileURLToPath(new URL('./chaos-fuzz-worker.ts', import.meta.url));

export async function startFuzzWorker(env: NodeJS.ProcessEnv): Promise<FuzzWorker> {
  const child: ChildProcess = fork(WORKER, [], { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const pending = new Map<number, { resolve: (m: { code?: number; threw?: string }) => void; reject: (e: Error) => void; what: string }>();
  child.on('message', (m: { id: number; code?: number; threw?: string }) => pending.get(m.id)?.resolve(m));
  const exited = new Promise<void>((r) =>
    child.on('exit', (code) => {
      for (const p of pending.values()) p.reject(new Error(`fuzz worker died (exit ${code}) during ${p.what}:\n${stderr.slice(-2000)}`));
      r();
    }),
  );
  await new Promise<void>((resolve, reject) => pending.set(-1, { resolve: () => resolve(), reject, what: 'start-up' }));
  pending.delete(-1);
  let next = 0;
  const cut = (all: string, id: number): string => {
    const start = all.indexOf(`\n@@START ${id}@@\n`);
    const end = all.indexOf(`\n@@END ${id}@@\n`);
    return start < 0 || end < 0 ? all : all.slice(start + `\n@@START ${id}@@\n`.length, end);
  };
  const waitFor = async (marker: string): Promise<void> => {
    for (let i = 0; i < 2000 && !(stdout.includes(marker) && stderr.includes(marker)); i++) await new Promise((r) => setTimeout(r, 1));
  };
  return {
    async call(args) {
      const id = next++;
      const answer = await new Promise<{ code?: number; threw?: string }>((resolve, reject) => {
        pending.set(id, { resolve, reject, what: JSON.stringify(args) });
        child.send({ id, args });
      });
      pending.delete(id);
      await waitFor(`\n@@END ${id}@@\n`);
      const r = { code: answer.code, threw: answer.threw, stdout: cut(stdout, id), stderr: cut(stderr, id) };
      // Keep memory flat over thousands of calls.
      stdout = stdout.slice(stdout.indexOf(`\n@@END ${id}@@\n`) + 1);
      stderr = stderr.slice(stderr.indexOf(`\n@@END ${id}@@\n`) + 1);
      return r;
    },
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
