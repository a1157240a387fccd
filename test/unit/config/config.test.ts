// The configuration module: parsing, defaults, every user-facing message
// (file:line, key path), the JSON Schema for editors.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { buildJsonSchema, loadConfig, parseConfig, parseDuration } from '../../../agent/config/index.ts';
import { ConfigError, type ConfigIssue } from '../../../agent/errors.ts';
import type { AgentConfig } from '../../../agent/types.ts';
import { FETCH_BAD_PORTS } from '../../../agent/config/values.ts';
import { SCHEMA_FILE, renderJsonSchema } from '../../../scripts/schema.ts';
import { runAgent } from '../../support/cli.ts';

const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'config');

/** Parses `text` as config.yaml and returns the ConfigError's issues (fails if it parses). */
function issuesOf(text: string): readonly ConfigIssue[] {
  try {
    parseConfig(text, 'config.yaml', '/etc/secrets-agent');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.issues;
  }
  assert.fail(`expected a ConfigError for:\n${text}`);
}

function withoutLineOf(c: AgentConfig): Omit<AgentConfig, 'lineOf'> {
  const { lineOf: _lineOf, ...rest } = c;
  return rest;
}

describe('config: valid files', () => {
  it('when given the full example of the spec, it applies defaults, converts durations to ms and resolves paths', async () => {
    const config = await loadConfig(join(FIXTURES, 'full.yaml'));

    assert.deepEqual(withoutLineOf(config), {
      configPath: join(FIXTURES, 'full.yaml'),
      source: { type: 'aws', region: 'us-east-1', assumeRoleArn: 'arn:aws:iam::222222222222:role/app-secrets' },
      outputDir: '/run/secrets/app',
      layout: 'generations',
      refresh: { intervalMs: 300_000, jitter: 0.2, rotationAware: true },
      secrets: [
        { name: 'db', id: 'prod/app/db', versionStage: 'AWSCURRENT', refreshIntervalMs: 60_000 },
        { name: 'tls', id: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/tls-AbCdEf', versionStage: 'AWSCURRENT' },
      ],
      files: [
        {
          path: 'db.env',
          kind: 'template',
          template: 'DB_USER={{ secrets.db.username }}\nDB_PASSWORD={{ secrets.db.password | dotenv }}\n',
          mode: 0o440,
          uid: 1000,
          gid: 1000,
        },
        { path: 'tls.crt', kind: 'templateFile', templateFile: '/etc/secrets-agent/templates/tls.crt.liquid', mode: 0o400 },
        { path: 'tls.key', kind: 'secret', secret: 'tls', key: 'private_key', mode: 0o400 },
      ],
      notify: [
        { name: 'signal:nginx', kind: 'signal', signal: 'SIGHUP', process: 'nginx', files: ['tls.crt', 'tls.key'], splayMs: 0 },
        { name: 'exec:sh', kind: 'exec', argv: ['/bin/sh', '-c', 'echo reloaded'], timeoutMs: 30_000, splayMs: 0 },
        { name: 'http:127.0.0.1:8080/-/reload', kind: 'http', url: 'http://127.0.0.1:8080/-/reload', timeoutMs: 10_000, splayMs: 5_000 },
      ],
      server: { listen: '0.0.0.0:9102' },
    });
  });

  it('when keys are left out, it fills in the documented defaults', () => {
    const config = parseConfig('outputDir: /out\nfiles:\n  - path: a.txt\n    template: hello\n', 'c.yaml', '/etc');

    assert.deepEqual(config.source, { type: 'aws' });
    assert.equal(config.layout, 'generations');
    assert.deepEqual(config.refresh, { intervalMs: 300_000, jitter: 0.2, rotationAware: true });
    assert.deepEqual(config.secrets, []);
    assert.deepEqual(config.files, [{ path: 'a.txt', kind: 'template', template: 'hello', mode: 0o400 }]);
    assert.deepEqual(config.notify, []);
    assert.deepEqual(config.server, { listen: '0.0.0.0:9102' });
  });

  it('when the config is JSON with relative paths, it reads it and resolves the paths against its directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'config-test-'));
    after(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, 'conf'));
    const file = join(dir, 'conf', 'agent.json');
    const json = {
      $schema: '../schema/config.schema.json',
      source: { type: 'file', path: 'dev-secrets.yaml' },
      outputDir: './out',
      layout: 'files',
      refresh: { interval: '1h30m', jitter: 0, rotationAware: false },
      secrets: { db: { id: 'prod/db', versionId: '3f1c0b6e-6b1a-4a55-9a5d-6a5b5a1d2c3e' }, api: { id: 'api', versionStage: 'AWSPENDING' } },
      files: [
        { path: 'certs/tls.crt', templateFile: 'templates/tls.liquid', secret: 'db', mode: '0644' },
        { path: 'api', secret: 'api' },
      ],
      notify: [{ signal: 'usr1', pidFile: 'run/app.pid', splay: '250ms', name: 'app' }],
      server: { listen: '' },
    };
    await writeFile(file, JSON.stringify(json, null, '\t'));

    const config = await loadConfig(file);

    assert.equal(config.configPath, file);
    assert.deepEqual(config.source, { type: 'file', path: join(dir, 'conf', 'dev-secrets.yaml') });
    assert.equal(config.outputDir, join(dir, 'conf', 'out'));
    assert.equal(config.layout, 'files');
    assert.deepEqual(config.refresh, { intervalMs: 5_400_000, jitter: 0, rotationAware: false });
    assert.deepEqual(config.secrets, [
      { name: 'db', id: 'prod/db', versionId: '3f1c0b6e-6b1a-4a55-9a5d-6a5b5a1d2c3e' },
      { name: 'api', id: 'api', versionStage: 'AWSPENDING' },
    ]);
    assert.deepEqual(config.files, [
      { path: 'certs/tls.crt', kind: 'templateFile', templateFile: join(dir, 'conf', 'templates', 'tls.liquid'), secret: 'db', mode: 0o644 },
      { path: 'api', kind: 'secret', secret: 'api', mode: 0o400 },
    ]);
    assert.deepEqual(config.notify, [
      { name: 'app', kind: 'signal', signal: 'SIGUSR1', pidFile: join(dir, 'conf', 'run', 'app.pid'), splayMs: 250 },
    ]);
    assert.deepEqual(config.server, { listen: '' });
    const text = await readFile(file, 'utf8');
    const lineOfText = (needle: string): number => text.split('\n').findIndex((l) => l.includes(needle)) + 1;
    assert.equal(config.lineOf('files[1]'), lineOfText('"path": "api"') - 1, 'the line of the item\'s "{"');
    assert.equal(config.lineOf('notify[0].signal'), lineOfText('"signal"'));
  });

  it('when notify names are derived and collide, it appends #2, #3 and keeps configured names', () => {
    const config = parseConfig(
      `outputDir: /out
files: [{path: a, template: x}]
notify:
  - exec: [/usr/bin/reload]
  - exec: [/sbin/reload, --all]
  - http: "https://app.local:8443/reload?token=t"
  - signal: SIGHUP
    process: nginx
  - exec: [reload]
    name: exec:reload#2
  - exec: [./reload]
`,
      'c.yaml',
      '/etc',
    );

    assert.deepEqual(
      config.notify.map((n) => n.name),
      ['exec:reload', 'exec:reload#3', 'http:app.local:8443/reload', 'signal:nginx', 'exec:reload#2', 'exec:reload#4'],
    );
  });

  it('when asked for a key path, lineOf returns its line; for a block template, the line where the text begins', async () => {
    const text = await readFile(join(FIXTURES, 'full.yaml'), 'utf8');
    const config = parseConfig(text, 'full.yaml', FIXTURES);
    const lineOfText = (needle: string): number => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

    assert.equal(config.lineOf('files[0].template'), lineOfText('DB_USER='));
    assert.equal(config.lineOf('files[0]'), lineOfText('path: db.env'));
    assert.equal(config.lineOf('files[2].key'), lineOfText('key: private_key'));
    assert.equal(config.lineOf('secrets.db'), lineOfText('  db:'));
    assert.equal(config.lineOf('secrets.db.refreshInterval'), lineOfText('refreshInterval: 1m'));
    assert.equal(config.lineOf('notify[0]'), lineOfText('signal: SIGHUP'));
    assert.equal(config.lineOf('notify[1].timeout'), lineOfText('timeout: 30s'));
    assert.equal(config.lineOf('server.listen'), lineOfText('listen:'));
    assert.equal(config.lineOf('files[9]'), undefined);
    assert.equal(config.lineOf('files[0].mode.x'), undefined);
    assert.equal(config.lineOf('not a path!'), undefined);

    const inline = parseConfig('outputDir: /o\nfiles:\n  - path: a\n    template: "{{ x }}"\n', 'c.yaml', '/');
    assert.equal(inline.lineOf('files[0].template'), 4);
    const folded = parseConfig('outputDir: /o\nfiles:\n  - path: a\n    template: >-  # folded\n      {{ x }}\n', 'c.yaml', '/');
    assert.equal(folded.lineOf('files[0].template'), 5);
  });

  it('when given durations, it converts them to milliseconds', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1.5s'), 1_500);
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration('5 min'), undefined);
    assert.equal(parseDuration('5'), undefined);
    assert.equal(parseDuration(''), undefined);
  });
});

// Lines of BASE: 1 outputDir, 2 secrets:, 3 db:, 4 id, 5 files:, 6 - path: db.env, 7 secret: db
const BASE = `outputDir: /run/secrets/app
secrets:
  db:
    id: prod/app/db
files:
  - path: db.env
    secret: db
`;
const cases: { name: string; text: string; line: number; path: string; message: string | RegExp }[] = [
  { name: 'unknown top-level key', text: `${BASE}outputdir: /x\n`, line: 8, path: 'outputdir', message: 'unknown key (did you mean "outputDir"?)' },
  {
    name: 'typo in a refresh key',
    text: `${BASE}refresh:\n  interval: 5m\n  jiter: 0.1\n`,
    line: 10,
    path: 'refresh.jiter',
    message: 'unknown key (did you mean "jitter"?)',
  },
  {
    name: 'unknown key with nothing close',
    text: BASE.replace('    secret: db\n', '    secret: db\n    content: x\n'),
    line: 8,
    path: 'files[0].content',
    message: /^unknown key \(valid keys: path, dir, eachKey, decode, envFile, envSyntax, template, templateFile, secret, key, mode, uid, gid\)$/,
  },
  {
    name: 'bad duration',
    text: `${BASE}refresh:\n  interval: 5 min\n`,
    line: 9,
    path: 'refresh.interval',
    message: '"5 min" is not a duration (use e.g. "30s", "5m", "1h")',
  },
  { name: 'duration too short', text: `${BASE}refresh: {interval: 1ms}\n`, line: 8, path: 'refresh.interval', message: '"1ms" is too short (at least 10ms)' },
  { name: 'jitter out of range', text: `${BASE}refresh: {jitter: 1.5}\n`, line: 8, path: 'refresh.jitter', message: 'must be between 0 and 0.9' },
  {
    name: 'bad mode',
    text: `${BASE}    mode: "0999"\n`,
    line: 8,
    path: 'files[0].mode',
    message: '"0999" is not an octal file mode (e.g. "0440")',
  },
  { name: 'mode as a YAML number', text: `${BASE}    mode: 0440\n`, line: 8, path: 'files[0].mode', message: '0440 is a number; quote it: "0440"' },
  { name: 'setuid mode', text: `${BASE}    mode: "04755"\n`, line: 8, path: 'files[0].mode', message: /setuid, setgid or sticky/ },
  { name: 'mode the owner cannot read', text: `${BASE}    mode: "0200"\n`, line: 8, path: 'files[0].mode', message: /owner read/ },
  { name: 'path with ..', text: BASE.replace('db.env', '../etc/db.env'), line: 6, path: 'files[0].path', message: /must not contain "\.\."/ },
  { name: 'absolute path', text: BASE.replace('db.env', '/etc/db.env'), line: 6, path: 'files[0].path', message: /must be relative to outputDir/ },
  { name: 'leading dot', text: BASE.replace('db.env', '.env'), line: 6, path: 'files[0].path', message: /names starting with "\." are reserved/ },
  { name: 'empty path segment', text: BASE.replace('db.env', 'certs//db.env'), line: 6, path: 'files[0].path', message: /empty segment/ },
  { name: 'backslash', text: BASE.replace('db.env', 'certs\\\\db.env'), line: 6, path: 'files[0].path', message: /not "\\"/ },
  {
    name: 'duplicate path',
    text: `${BASE}  - path: db.env\n    template: x\n`,
    line: 8,
    path: 'files[1].path',
    message: '"db.env" is already the path of files[0]',
  },
  {
    name: 'a path that is a directory of another',
    text: `${BASE}  - path: db.env/inner\n    template: x\n`,
    line: 8,
    path: 'files[1].path',
    message: /would be inside "db\.env", which is a file/,
  },
  {
    name: 'both versionStage and versionId',
    text: BASE.replace('    id: prod/app/db\n', '    id: prod/app/db\n    versionStage: AWSCURRENT\n    versionId: 3f1c0b6e-6b1a-4a55-9a5d-6a5b5a1d2c3e\n'),
    line: 6,
    path: 'secrets.db.versionId',
    message: /versionStage and versionId are mutually exclusive/,
  },
  {
    name: 'parameter name with a space',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: "/a b"\n'),
    line: 4,
    path: 'secrets.db.parameter',
    message: /may contain only letters, digits/,
  },
  {
    name: 'parameter hierarchy without a leading slash',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: prod/app\n'),
    line: 4,
    path: 'secrets.db.parameter',
    message: /must start with "\/"/,
  },
  {
    name: 'malformed parameter ARN',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: "arn:aws:ssm:us-east-1:1234:parameter/x"\n'),
    line: 4,
    path: 'secrets.db.parameter',
    message: /is not an SSM parameter ARN/,
  },
  {
    name: 'parameter name too long',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n'),
    line: 4,
    path: 'secrets.db.parameter',
    message: /at most 1011/,
  },
  {
    name: 'parameter name with 16 levels',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a\n'),
    line: 4,
    path: 'secrets.db.parameter',
    message: /16 levels; SSM allows at most 15/,
  },
  {
    name: 'parameter named "/"',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /\n'),
    line: 4,
    path: 'secrets.db.parameter',
    message: /is a path, not a parameter/,
  },
  {
    name: 'parameterPath without a leading slash',
    text: BASE.replace('    id: prod/app/db\n', '    parameterPath: prod/app/\n'),
    line: 4,
    path: 'secrets.db.parameterPath',
    message: /a path starts with "\/"/,
  },
  {
    name: 'parameterPath with an empty level',
    text: BASE.replace('    id: prod/app/db\n', '    parameterPath: /a//b/\n'),
    line: 4,
    path: 'secrets.db.parameterPath',
    message: /empty level/,
  },
  {
    name: 'parameter version 0',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n    version: 0\n'),
    line: 5,
    path: 'secrets.db.version',
    message: 'must be a parameter version number (1, 2, ...)',
  },
  {
    name: 'parameter version as a string',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n    version: "3"\n'),
    line: 5,
    path: 'secrets.db.version',
    message: /must be a parameter version number/,
  },
  {
    name: 'label starting with a digit',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n    label: 1live\n'),
    line: 5,
    path: 'secrets.db.label',
    message: /starts with a digit/,
  },
  {
    name: 'label starting with aws',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n    label: awsLive\n'),
    line: 5,
    path: 'secrets.db.label',
    message: /may not start with "aws" or "ssm"/,
  },
  {
    name: 'both version and label',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n    version: 3\n    label: live\n'),
    line: 6,
    path: 'secrets.db.label',
    message: /version and label are mutually exclusive/,
  },
  {
    name: 'version with id',
    text: BASE.replace('    id: prod/app/db\n', '    id: prod/app/db\n    version: 3\n'),
    line: 5,
    path: 'secrets.db.version',
    message: /only valid with parameter/,
  },
  {
    name: 'label with parameterPath',
    text: BASE.replace('    id: prod/app/db\n', '    parameterPath: /a/\n    label: live\n'),
    line: 5,
    path: 'secrets.db.label',
    message: /only valid with parameter \(a path has no version/,
  },
  {
    name: 'versionStage with parameter',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n    versionStage: AWSCURRENT\n'),
    line: 5,
    path: 'secrets.db.versionStage',
    message: /only valid with id/,
  },
  {
    name: 'both id and parameter',
    text: BASE.replace('    id: prod/app/db\n', '    id: prod/app/db\n    parameter: /a/b\n'),
    line: 5,
    path: 'secrets.db.parameter',
    message: 'id and parameter are mutually exclusive; keep one',
  },
  {
    name: 'secret without id, parameter or parameterPath',
    text: BASE.replace('    id: prod/app/db\n', '    refreshInterval: 1m\n'),
    line: 3,
    path: 'secrets.db',
    message: /needs one of id \(Secrets Manager\), parameter or parameterPath/,
  },
  {
    name: 'refreshInterval with a pinned parameter version',
    text: BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n    version: 2\n    refreshInterval: 1m\n'),
    line: 6,
    path: 'secrets.db.refreshInterval',
    message: /has no effect with version/,
  },
  {
    name: 'parameter with the file source',
    text: `source: {type: file, path: s.yaml}\n${BASE.replace('    id: prod/app/db\n', '    parameter: /a/b\n')}`,
    line: 5,
    path: 'secrets.db.parameter',
    message: /the file source serves Secrets Manager ids only/,
  },
  {
    name: 'a file with template and templateFile',
    text: `${BASE}  - path: b\n    template: x\n    templateFile: b.liquid\n`,
    line: 10,
    path: 'files[1].templateFile',
    message: 'template and templateFile are mutually exclusive; keep one',
  },
  {
    name: 'a file without content',
    text: `${BASE}  - path: b\n    mode: "0444"\n`,
    line: 8,
    path: 'files[1]',
    message: 'needs content: one of template, templateFile, secret or envFile',
  },
  {
    name: 'key without secret',
    text: `${BASE}  - path: b\n    template: x\n    key: password\n`,
    line: 10,
    path: 'files[1].key',
    message: /only valid with secret/,
  },
  {
    name: 'undeclared secret',
    text: BASE.replace('secret: db', 'secret: dbb'),
    line: 7,
    path: 'files[0].secret',
    message: '"dbb" is not declared under secrets (did you mean "db"?)',
  },
  { name: 'invalid secret name', text: BASE.replace('  db:', '  my.db:').replace('secret: db', 'template: x'), line: 3, path: 'secrets["my.db"]', message: /is not a valid secret name/ },
  { name: 'notify without a kind', text: `${BASE}notify:\n  - files: [db.env]\n`, line: 9, path: 'notify[0]', message: 'needs one of signal, exec or http' },
  {
    name: 'notify with two kinds',
    text: `${BASE}notify:\n  - http: http://a/\n    exec: [x]\n`,
    line: 10,
    path: 'notify[0].exec',
    message: /exec are mutually exclusive/,
  },
  {
    name: 'signal with both process and pidFile',
    text: `${BASE}notify:\n  - signal: SIGHUP\n    process: nginx\n    pidFile: /run/app.pid\n`,
    line: 11,
    path: 'notify[0].pidFile',
    message: 'process and pidFile are mutually exclusive; keep one',
  },
  { name: 'signal with no target', text: `${BASE}notify:\n  - signal: SIGHUP\n`, line: 9, path: 'notify[0]', message: /signal needs process .* or pidFile/ },
  {
    name: 'bad signal name',
    text: `${BASE}notify:\n  - signal: SIGHOP\n    process: nginx\n`,
    line: 9,
    path: 'notify[0].signal',
    message: '"SIGHOP" is not a signal name (e.g. "SIGHUP")',
  },
  { name: 'bad URL', text: `${BASE}notify:\n  - http: ftp://app/reload\n`, line: 9, path: 'notify[0].http', message: 'must be an http:// or https:// URL' },
  {
    name: 'timeout on a signal',
    text: `${BASE}notify:\n  - signal: HUP\n    process: nginx\n    timeout: 5s\n`,
    line: 11,
    path: 'notify[0].timeout',
    message: 'only valid with exec or http',
  },
  {
    name: 'notify files naming an unknown file',
    text: `${BASE}notify:\n  - exec: [/bin/reload]\n    files: [db.env, db.nev]\n`,
    line: 10,
    path: 'notify[0].files[1]',
    message: '"db.nev" is not the path of any entry under files (did you mean "db.env"?)',
  },
  {
    name: 'duplicate notify names',
    text: `${BASE}notify:\n  - {exec: [a], name: reload}\n  - {exec: [b], name: reload}\n`,
    line: 10,
    path: 'notify[1].name',
    message: /"reload" is already the name of notify\[0\]/,
  },
  {
    name: 'notify URL with a user and password',
    text: `${BASE}notify:\n  - http: "http://reloader:pw-CANARY-9d2f@127.0.0.1:8080/reload"\n`,
    line: 9,
    path: 'notify[0].http',
    message: 'must not include a user name or password ("user:password@"): fetch refuses such URLs; remove them (the agent sends no credentials)',
  },
  {
    name: 'notify URL on a port fetch refuses',
    text: `${BASE}notify:\n  - http: http://127.0.0.1:6000/reload\n`,
    line: 9,
    path: 'notify[0].http',
    message: 'port 6000 is one fetch never connects to (a "bad port" of the Fetch standard); let the app\'s reload endpoint listen on another port',
  },
  {
    name: 'file path over PATH_MAX',
    text: BASE.replace('db.env', `${`${'a'.repeat(200)}/`.repeat(20)}${'b'.repeat(100)}`),
    line: 6,
    path: 'files[0].path',
    message: /is too long: with outputDir its full path is 4137 bytes, over Linux's limit of 4095 \(PATH_MAX\), so it could not be opened; shorten the path or outputDir$/,
  },
  {
    name: 'outputDir name over 255 bytes',
    text: BASE.replace('/run/secrets/app', `/run/${'d'.repeat(256)}`),
    line: 1,
    path: 'outputDir',
    message: 'has a directory name longer than 255 bytes, the most Linux allows (NAME_MAX); shorten it',
  },
  { name: 'bad listen address', text: `${BASE}server: {listen: "0.0.0.0:70000"}\n`, line: 8, path: 'server.listen', message: /is not host:port/ },
  {
    name: 'file source with an aws key',
    text: `${BASE}source:\n  type: file\n  path: dev.yaml\n  region: us-east-1\n`,
    line: 11,
    path: 'source.region',
    message: /only valid with type: aws/,
  },
  {
    name: 'bad role ARN',
    text: `${BASE}source: {assumeRoleArn: "arn:aws:iam::12:role/x"}\n`,
    line: 8,
    path: 'source.assumeRoleArn',
    message: /is not an IAM role ARN/,
  },
  {
    name: 'failoverRegion that is not a region',
    text: `${BASE}source: {failoverRegion: "us-west"}\n`,
    line: 8,
    path: 'source.failoverRegion',
    message: '"us-west" is not an AWS region (e.g. "us-west-2")',
  },
  {
    name: 'failoverRegion equal to region',
    text: `${BASE}source:\n  region: us-east-1\n  failoverRegion: us-east-1\n`,
    line: 10,
    path: 'source.failoverRegion',
    message: /^"us-east-1" is source\.region itself; name a second region/,
  },
  {
    name: 'file source with a failoverRegion',
    text: `${BASE}source:\n  type: file\n  path: dev.yaml\n  failoverRegion: us-west-2\n`,
    line: 11,
    path: 'source.failoverRegion',
    message: /only valid with type: aws/,
  },
  { name: 'a number where a string belongs', text: BASE.replace('prod/app/db', '12345'), line: 4, path: 'secrets.db.id', message: 'must be a string; quote it: "12345"' },
  { name: 'YAML syntax error', text: `${BASE}notify: [\n`, line: 8, path: '', message: /^YAML syntax error: / },
  { name: 'duplicate YAML key', text: `${BASE}outputDir: /x\n`, line: 8, path: '', message: /duplicate key "outputDir"/ },
  { name: 'missing outputDir', text: BASE.replace('outputDir: /run/secrets/app\n', ''), line: 1, path: 'outputDir', message: /^required key is missing/ },
  { name: 'missing files', text: 'outputDir: /out\n', line: 1, path: 'files', message: /^required key is missing/ },
  { name: 'empty file', text: '# nothing here\n', line: 1, path: '', message: /the file is empty/ },
  { name: 'not a mapping', text: '- outputDir: /x\n', line: 1, path: '', message: /expected a mapping/ },
];

describe('config: mistakes', () => {
  for (const c of cases) {
    it(`when the config has a ${c.name}, it reports exactly that, with file:line and key path`, () => {
      const issues = issuesOf(c.text);

      assert.equal(issues.length, 1, `expected one issue, got:\n${issues.map((i) => JSON.stringify(i)).join('\n')}`);
      const [issue] = issues;
      assert.equal(issue?.file, 'config.yaml');
      assert.equal(issue?.line, c.line, JSON.stringify(issue));
      assert.equal(issue?.path, c.path);
      if (typeof c.message === 'string') assert.equal(issue?.message, c.message);
      else assert.match(issue?.message ?? '', c.message);
    });
  }

  it('when the message is formatted, it reads "file:line: path: message"', () => {
    try {
      parseConfig(`${BASE}    mode: "0999"\n`, 'config.yaml', '/');
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.message, 'config.yaml:8: files[0].mode: "0999" is not an octal file mode (e.g. "0440")');
    }
  });

  it('when a config has several mistakes, it lists all of them in line order', () => {
    const text = `outputDir: /out
refresh:
  intervall: 5m
  jitter: 2
secrets:
  db: {id: x, versionStage: A, versionId: 3f1c0b6e-6b1a-4a55-9a5d-6a5b5a1d2c3e}
files:
  - path: ../x
    mode: 0640
  - path: b
    template: x
    templateFile: y
    secret: nope
notify:
  - {}
  - signal: SIGFOO
    process: nginx
    pidFile: /run/x.pid
  - http: "not a url"
    files: [c]
bogus: 1
`;
    const found = issuesOf(text).map((i) => `${i.line}: ${i.path}`);

    assert.deepEqual(found, [
      '3: refresh.intervall',
      '4: refresh.jitter',
      '6: secrets.db.versionId',
      '8: files[0].path',
      '8: files[0]',
      '9: files[0].mode',
      '12: files[1].templateFile',
      '13: files[1].secret',
      '15: notify[0]',
      '16: notify[1].signal',
      '18: notify[1].pidFile',
      '19: notify[2].http',
      '20: notify[2].files[0]',
      '21: bogus',
    ]);
  });

  it('when the file does not exist or is a directory, it throws a ConfigError naming the file as given', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'config-test-'));
    after(() => rm(dir, { recursive: true, force: true }));
    const missing = join(dir, 'nope.yaml');

    await assert.rejects(loadConfig(missing), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.issues, [{ file: missing, path: '', message: 'file not found (set --config or SECRETS_AGENT_CONFIG to the configuration file)' }]);
      return true;
    });
    await assert.rejects(loadConfig(dir), (err: unknown) => err instanceof ConfigError && /is a directory/.test(err.message));
  });

  it('when given any text or any document, it returns a config or throws a ConfigError, never anything else', () => {
    // Documents made of the real keys with arbitrary values reach the deeper rules.
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom('db', 'db.env', '5m', '0440', 'SIGHUP', 'http://a/', '/abs', '..', 'file', 'aws'),
    );
    const obj = (keys: string[]) => fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 6 });
    const doc = fc.record(
      {
        outputDir: value,
        source: fc.oneof(value, obj(['type', 'region', 'assumeRoleArn', 'path', 'x'])),
        refresh: fc.oneof(value, obj(['interval', 'jitter', 'rotationAware'])),
        secrets: fc.oneof(value, fc.dictionary(fc.constantFrom('db', 'tls', '1x'), fc.oneof(value, obj(['id', 'versionStage', 'versionId', 'refreshInterval', 'parameter', 'parameterPath', 'version', 'label'])))),
        files: fc.oneof(value, fc.array(fc.oneof(value, obj(['path', 'template', 'templateFile', 'secret', 'key', 'mode', 'uid', 'gid'])), { maxLength: 4 })),
        notify: fc.oneof(value, fc.array(fc.oneof(value, obj(['signal', 'process', 'pidFile', 'exec', 'http', 'timeout', 'splay', 'files', 'name'])), { maxLength: 3 })),
        server: fc.oneof(value, obj(['listen'])),
      },
      { requiredKeys: [] },
    );
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      doc.map((d) => stringify(d)),
      doc.map((d) => JSON.stringify(d)),
    );

    fc.assert(
      fc.property(text, (t) => {
        try {
          parseConfig(t, 'config.yaml', '/base');
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          assert.ok(err.issues.length > 0);
          for (const issue of err.issues) {
            assert.equal(issue.file, 'config.yaml');
            assert.ok(issue.message.length > 0);
            assert.doesNotMatch(issue.message, /\[object |undefined|NaN|\n/, issue.message);
          }
        }
      }),
      { numRuns: 400 },
    );
  });
});

/**
 * A small validator for the JSON Schema keywords our schema uses (no JSON
 * Schema library is a dependency). It throws on any keyword it does not know,
 * so a constraint can never be skipped silently.
 */
interface SchemaNode {
  type?: string;
  enum?: unknown[];
  const?: unknown;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  items?: unknown;
  properties?: Record<string, unknown>;
  required?: string[];
  additionalProperties?: unknown;
  propertyNames?: unknown;
  dependentRequired?: Record<string, string[]>;
  dependentSchemas?: Record<string, unknown>;
  anyOf?: unknown[];
  oneOf?: unknown[];
  not?: unknown;
  if?: unknown;
  then?: unknown;
  else?: unknown;
}
function jsonSchemaAccepts(schema: unknown, value: unknown): boolean {
  if (schema === true) return true;
  if (schema === false) return false;
  const s = schema as SchemaNode;
  const known = new Set(['$schema', 'title', 'description', 'default', 'type', 'enum', 'const', 'minLength', 'maxLength', 'pattern',
    'minimum', 'maximum', 'minItems', 'items', 'properties', 'required', 'additionalProperties', 'propertyNames',
    'dependentRequired', 'dependentSchemas', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else']);
  for (const k of Object.keys(s)) if (!known.has(k)) throw new Error(`jsonSchemaAccepts: unsupported keyword ${k}`);
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const types: Record<string, (v: unknown) => boolean> = {
    string: (v) => typeof v === 'string',
    number: (v) => typeof v === 'number',
    integer: (v) => Number.isInteger(v),
    boolean: (v) => typeof v === 'boolean',
    array: Array.isArray,
    object: isObject,
  };
  if (s.type !== undefined && !types[s.type]!(value)) return false;
  if (s.enum && !s.enum.includes(value)) return false;
  if ('const' in s && s.const !== value) return false;
  if (typeof value === 'string') {
    const length = [...value].length;
    if (s.minLength !== undefined && length < s.minLength) return false;
    if (s.maxLength !== undefined && length > s.maxLength) return false;
    if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(value)) return false;
  }
  if (typeof value === 'number') {
    if (s.minimum !== undefined && value < s.minimum) return false;
    if (s.maximum !== undefined && value > s.maximum) return false;
  }
  if (Array.isArray(value)) {
    if (s.minItems !== undefined && value.length < s.minItems) return false;
    if (s.items !== undefined && !value.every((v) => jsonSchemaAccepts(s.items, v))) return false;
  }
  if (isObject(value)) {
    const props: Record<string, unknown> = s.properties ?? {};
    if (s.required && !s.required.every((k) => k in value)) return false;
    for (const [k, v] of Object.entries(value)) {
      if (k in props) {
        if (!jsonSchemaAccepts(props[k], v)) return false;
      } else if (s.additionalProperties !== undefined && !jsonSchemaAccepts(s.additionalProperties, v)) return false;
      if (s.propertyNames !== undefined && !jsonSchemaAccepts(s.propertyNames, k)) return false;
    }
    for (const [k, needs] of Object.entries(s.dependentRequired ?? {})) {
      if (k in value && !needs.every((n) => n in value)) return false;
    }
    for (const [k, sub] of Object.entries(s.dependentSchemas ?? {})) if (k in value && !jsonSchemaAccepts(sub, value)) return false;
  }
  if (s.anyOf && !s.anyOf.some((sub) => jsonSchemaAccepts(sub, value))) return false;
  if (s.oneOf && s.oneOf.filter((sub) => jsonSchemaAccepts(sub, value)).length !== 1) return false;
  if (s.not !== undefined && jsonSchemaAccepts(s.not, value)) return false;
  if (s.if !== undefined) {
    const branch = jsonSchemaAccepts(s.if, value) ? s.then : s.else;
    if (branch !== undefined && !jsonSchemaAccepts(branch, value)) return false;
  }
  return true;
}

function acceptsConfig(text: string): boolean {
  try {
    parseConfig(text, 'config.yaml', '/base');
    return true;
  } catch (err) {
    if (err instanceof ConfigError) return false;
    throw err;
  }
}

describe('validate (real CLI): configs that could never work', () => {
  it('when a config has a path over PATH_MAX, a long outputDir name, a URL with a password or on a bad port, validate exits 2 listing each with file:line, never the password', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'config-cli-'));
    after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'config.yaml');
    const password = 'pw-CANARY-51c0e7';
    // 4,090 bytes: short enough beside "out" as written, too long beside the directory it resolves to.
    const longPath = `${`${'a'.repeat(200)}/`.repeat(20)}${'b'.repeat(70)}`;
    assert.equal(longPath.length, 4090);
    await writeFile(
      file,
      `outputDir: out
secrets:
  db: {id: app/db}
files:
  - path: ${longPath}
    secret: db
  - path: ok.env
    secret: db
notify:
  - http: "https://reloader:${password}@app.internal:8443/reload"
  - http: http://127.0.0.1:10080/reload
  - http: http://127.0.0.1:8080/reload
`,
    );
    const r = await runAgent(['validate', '--config', file]);

    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    const messages = r.stderr.trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg);
    const bytes = Buffer.byteLength(join(dir, 'out')) + 1 + 4090;
    assert.deepEqual(messages, [
      `${file}:5: files[0].path: "${'a'.repeat(57)}..." is too long: with outputDir its full path is ${bytes} bytes, over Linux's limit of 4095 (PATH_MAX), so it could not be opened; shorten the path or outputDir`,
      `${file}:10: notify[0].http: must not include a user name or password ("user:password@"): fetch refuses such URLs; remove them (the agent sends no credentials)`,
      `${file}:11: notify[1].http: port 10080 is one fetch never connects to (a "bad port" of the Fetch standard); let the app's reload endpoint listen on another port`,
    ]);
    assert.ok(!r.stderr.includes(password) && !r.stdout.includes(password), 'the password appears in the output');

    await writeFile(file, `outputDir: /run/${'d'.repeat(256)}/app\nfiles:\n  - path: a\n    template: x\n`);
    const r2 = await runAgent(['validate', '--config', file]);
    assert.equal(r2.code, 2, r2.stderr);
    assert.equal((JSON.parse(r2.stderr) as { msg: string }).msg, `${file}:1: outputDir: has a directory name longer than 255 bytes, the most Linux allows (NAME_MAX); shorten it`);
  });

  it('when the ports of fetch\'s "bad port" list are compared with what fetch does, every one is refused', async () => {
    // The list is copied from the Fetch standard (as Node's undici has it); a port fetch
    // refuses fails at once with "bad port", before any connection is tried.
    for (const port of FETCH_BAD_PORTS) {
      await assert.rejects(fetch(`http://127.0.0.1:${port}/`), (err: Error) => (err.cause as Error | undefined)?.message === 'bad port', `port ${port}`);
    }
    await assert.rejects(fetch('http://127.0.0.1:9/'), (err: Error) => (err.cause as Error | undefined)?.message === 'bad port');
    assert.ok(!FETCH_BAD_PORTS.has(8080) && !FETCH_BAD_PORTS.has(9102) && !FETCH_BAD_PORTS.has(443));
  });
});

describe('config: JSON Schema', () => {
  it('when compared with what scripts/schema.ts generates, schema/config.schema.json is up to date (else: npm run schema)', async () => {
    const committed: unknown = JSON.parse(await readFile(SCHEMA_FILE, 'utf8'));

    assert.deepEqual(committed, JSON.parse(renderJsonSchema()));
    assert.deepEqual(committed, buildJsonSchema());
  });

  it('when an editor reads it, it is draft 2020-12, strict, and describes every key', () => {
    const schema = buildJsonSchema() as { $schema: string; additionalProperties: boolean; required: string[]; properties: Record<string, { description?: string }> };

    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual(schema.required, ['outputDir', 'files']);
    for (const [key, sub] of Object.entries(schema.properties)) assert.ok(sub.description, `${key} has no description`);
  });

  it('when a config is valid, the JSON Schema accepts it too', async () => {
    const schema = buildJsonSchema();
    const valid = [
      await readFile(join(FIXTURES, 'full.yaml'), 'utf8'),
      BASE,
      `${BASE}source: {type: file, path: dev.yaml}\nlayout: files\nserver: {listen: ""}\n`,
      `${BASE}notify:\n  - {signal: hup, pidFile: run/app.pid, splay: "0"}\n  - {http: "HTTPS://[::1]:8443/x?y=1", timeout: 1.5s, files: [db.env], name: x}\n`,
      `${BASE}  - path: certs/a.crt\n    templateFile: t.liquid\n    secret: db\n    mode: "644"\n    uid: 0\n    gid: 4294967294\n`,
      BASE.replace('    id: prod/app/db\n', '    id: prod/app/db\n    versionId: 3f1c0b6e-6b1a-4a55-9a5d-6a5b5a1d2c3e\n'),
      `${BASE}server: {listen: "[::]:0"}\nrefresh: {interval: 1h30m, jitter: 0.9, rotationAware: false}\n`,
    ];
    for (const text of valid) {
      assert.ok(acceptsConfig(text), text);
      assert.ok(jsonSchemaAccepts(schema, parse(text)), `the JSON Schema rejects a valid config:\n${text}`);
    }
  });

  it('when a config is valid, the JSON Schema accepts it (property, over generated configs)', () => {
    const schema = buildJsonSchema();
    const pick = <T,>(...values: T[]) => fc.constantFrom(...values);
    // Mostly-valid configs: each file and notify entry picks one kind; the rules may still reject some.
    const mode = { mode: pick('0400', '0440', '644', '0777'), uid: fc.nat(), gid: fc.nat() };
    const file = fc.oneof(
      fc.record({ path: fc.constant(''), template: pick('', 'x', '{{ secrets.db.a }}'), secret: pick('db', 'tls'), ...mode }, { requiredKeys: ['path', 'template'] }),
      fc.record({ path: fc.constant(''), templateFile: pick('t.liquid', '/etc/t.liquid'), secret: pick('db'), ...mode }, { requiredKeys: ['path', 'templateFile'] }),
      fc.record({ path: fc.constant(''), secret: pick('db', 'tls'), key: pick('k'), ...mode }, { requiredKeys: ['path', 'secret'] }),
    );
    const common = { splay: pick('0', '0s', '5s'), files: pick(['a'], ['b.env', 'a']), name: pick('n1', 'n2') };
    const notify = fc.oneof(
      fc.record({ signal: pick('SIGHUP', 'hup', 'Usr1'), process: pick('nginx'), ...common }, { requiredKeys: ['signal', 'process'] }),
      fc.record({ signal: pick('SIGTERM'), pidFile: pick('/run/a.pid'), ...common }, { requiredKeys: ['signal', 'pidFile'] }),
      fc.record({ exec: pick(['/bin/true'], ['sh', '-c', '']), timeout: pick('1s', '10ms', '2h'), ...common }, { requiredKeys: ['exec'] }),
      fc.record({ http: pick('http://a/b', 'https://h:1/'), timeout: pick('1s'), ...common }, { requiredKeys: ['http'] }),
    );
    const secret = fc.oneof(
      fc.record({ id: pick('a/b'), versionStage: pick('AWSPENDING'), refreshInterval: pick('30s') }, { requiredKeys: ['id'] }),
      fc.record({ id: pick('a/b'), versionId: pick('3f1c0b6e-6b1a-4a55-9a5d-6a5b5a1d2c3e') }),
      fc.record({ parameter: pick('/a/b', 'plain', 'arn:aws:ssm:us-east-1:123456789012:parameter/a/b'), version: pick(3), refreshInterval: pick('30s') }, { requiredKeys: ['parameter'] }),
      fc.record({ parameter: pick('/a/b'), label: pick('live', 'v_1.x') }),
      fc.record({ parameterPath: pick('/', '/a/', '/a/b'), refreshInterval: pick('30s') }, { requiredKeys: ['parameterPath'] }),
    );
    const config = fc.record(
      {
        source: fc.oneof(
          fc.record({ type: pick('aws'), region: pick('eu-west-1'), assumeRoleArn: pick('arn:aws-cn:iam::123456789012:role/p/r') }, { requiredKeys: [] }),
          fc.record({ type: pick('file'), path: pick('s.yaml') }),
        ),
        outputDir: pick('/out', 'out'),
        layout: pick('generations', 'files'),
        refresh: fc.record({ interval: pick('5m', '1h30m'), jitter: pick(0, 0.5), rotationAware: fc.boolean() }, { requiredKeys: [] }),
        secrets: fc.record({ db: secret, tls: secret, x_1: secret }, { requiredKeys: ['db', 'tls'] }),
        files: fc
          .tuple(fc.array(file, { minLength: 1, maxLength: 3 }), fc.shuffledSubarray(['a', 'b.env', 'certs/c.crt', 'x-1_y.z'], { minLength: 3, maxLength: 3 }))
          .map(([files, paths]) => files.map((f, i) => ({ ...f, path: paths[i] }))),
        notify: fc.array(notify, { maxLength: 2 }),
        server: fc.record({ listen: pick('', '127.0.0.1:0', 'localhost:9102') }, { requiredKeys: [] }),
      },
      { requiredKeys: ['outputDir', 'files'] },
    );
    let validSeen = 0;
    fc.assert(
      fc.property(config, (c) => {
        const text = JSON.stringify(c);
        if (!acceptsConfig(text)) return;
        validSeen++;
        assert.ok(jsonSchemaAccepts(schema, c), `the JSON Schema rejects a valid config: ${text}`);
      }),
      { numRuns: 600 },
    );
    assert.ok(validSeen >= 20, `only ${validSeen} generated configs were valid; the generator needs tuning`);
  });

  it('when a config has a mistake, the JSON Schema rejects it too, except for rules JSON Schema cannot express', () => {
    const schema = buildJsonSchema();
    // Cross-references, uniqueness, numeric ranges inside strings, the platform's signal list, and YAML itself.
    const beyondJsonSchema = new Set([
      'duration too short', 'mode as a YAML number', 'path with ..', 'duplicate path', 'a path that is a directory of another', 'undeclared secret',
      'bad signal name', 'notify files naming an unknown file', 'duplicate notify names', 'bad listen address',
      'YAML syntax error', 'duplicate YAML key', 'empty file', 'mode the owner cannot read', 'setuid mode',
      'notify URL on a port fetch refuses', 'file path over PATH_MAX', 'outputDir name over 255 bytes',
      'parameter name with 16 levels', 'parameter with the file source', 'failoverRegion equal to region',
    ]);
    const missed: string[] = [];
    for (const c of cases) {
      if (beyondJsonSchema.has(c.name)) continue;
      if (jsonSchemaAccepts(schema, parse(c.text))) missed.push(c.name);
    }
    assert.deepEqual(missed, []);
    assert.ok(cases.length - beyondJsonSchema.size > cases.length / 2, 'the JSON Schema should reject most bad configs');
  });
});
