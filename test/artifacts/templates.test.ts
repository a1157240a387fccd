// Each ready-made template (templates/*.liquid) rendered and then read by the
// program that consumes such files in real life: bash, java.util.Properties,
// libpq (psql), the MySQL/MariaDB client library, openssl. When a consumer is
// not installed the test fails under CI and is skipped (with the reason) elsewhere.
import { describe, it, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { compileFiles, renderFiles, type RenderOutcome } from '../../agent/render/render.ts';
import { mycnfQuote } from '../../agent/render/template.ts';
import { jsonValue, stringValue, testConfig } from '../fixtures/render/config.ts';

const TEMPLATES = join(import.meta.dirname, '..', '..', 'templates');
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'render');

async function renderTemplate(name: string, payload: unknown): Promise<RenderOutcome> {
  const config = testConfig({ secrets: ['s'], files: [{ path: 'out', secret: 's', templateFile: join(TEMPLATES, name) }] });
  return renderFiles(config, await compileFiles(config), new Map([['s', jsonValue('s', payload)]]));
}

async function rendered(name: string, payload: unknown): Promise<string> {
  const outcome = await renderTemplate(name, payload);
  assert.deepEqual(outcome.errors.map((e) => e.message), []);
  return outcome.files[0]!.content.toString('utf8');
}

async function renderError(name: string, payload: unknown): Promise<string> {
  const outcome = await renderTemplate(name, payload);
  assert.equal(outcome.files.length, 0, 'expected the render to fail');
  return outcome.errors[0]!.message;
}

function have(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

/** True when the consumer is there; otherwise fails under CI, skips elsewhere. */
function requireConsumer(t: TestContext, command: string, installHint: string): boolean {
  if (have(command)) return true;
  const reason = `${command} is not installed (${installHint})`;
  if (process.env.CI) assert.fail(`${reason}: CI must provide it`);
  t.skip(reason);
  return false;
}

function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { status: number | null; stdout: Buffer; stderr: string } {
  const result = spawnSync(command, args, { ...options, maxBuffer: 16 << 20, timeout: 60_000 });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'templates-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('every ready-made template', () => {
  it('starts with a comment saying what it expects, and compiles', async () => {
    const names = (await readdir(TEMPLATES)).filter((n) => n.endsWith('.liquid')).sort();
    assert.deepEqual(names, ['docker-config.json.liquid', 'dotenv.liquid', 'java.properties.liquid', 'my.cnf.liquid', 'pgpass.liquid', 'tls-bundle.pem.liquid']);
    for (const name of names) {
      const text = await readFile(join(TEMPLATES, name), 'utf8');
      assert.match(text, /^\{% comment %\}\n.*Expects: /s, name);
      const config = testConfig({ secrets: ['s'], files: [{ path: 'out', secret: 's', templateFile: join(TEMPLATES, name) }] });
      await compileFiles(config);
    }
  });
});

describe('dotenv.liquid', () => {
  it('when sourced by bash with set -a, every key of the secret is in the environment with its exact value', async (t) => {
    if (!requireConsumer(t, 'bash', 'apt-get install bash')) return;
    // Prepare
    const payload = {
      DB_PASSWORD: `p"a$s\`s'w\\o#rd $(id) \${HOME}`,
      multi_line: 'line 1\nline 2\n\n',
      spaces: '  lead and trail  ',
      unicode: 'ünïcödé 日本 😀',
      PORT: 5432,
      DEBUG: false,
      nested: { a: [1, 'two'] },
      empty: '',
      nothing: null,
    };
    const file = join(dir, 'app.env');
    await writeFile(file, await rendered('dotenv.liquid', payload));
    // Act
    const result = run('bash', ['-c', 'set -a; . ./app.env; env -0'], { cwd: dir, env: { PATH: process.env.PATH } });
    // Assess
    assert.equal(result.status, 0, result.stderr);
    const env = new Map(
      result.stdout
        .toString('utf8')
        .split('\0')
        .filter(Boolean)
        .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
    );
    assert.equal(env.get('DB_PASSWORD'), payload.DB_PASSWORD);
    assert.equal(env.get('multi_line'), payload.multi_line);
    assert.equal(env.get('spaces'), payload.spaces);
    assert.equal(env.get('unicode'), payload.unicode);
    assert.equal(env.get('PORT'), '5432');
    assert.equal(env.get('DEBUG'), 'false');
    assert.equal(env.get('nested'), '{"a":[1,"two"]}');
    assert.equal(env.get('empty'), '');
    assert.equal(env.get('nothing'), '');
  });

  it('writes keys as they are, one KEY="value" line each', async () => {
    assert.equal(await rendered('dotenv.liquid', { b: 'x', A: 'y' }), 'b="x"\nA="y"\n');
    assert.equal(await rendered('dotenv.liquid', {}), '');
  });

  it('when a key is not a valid environment variable name, the render fails naming the key', async () => {
    const message = await renderError('dotenv.liquid', { GOOD: 'x', 'my-key': 'secret-value' });
    assert.match(message, /env_entries: key "my-key" is not a valid environment variable name/);
    assert.ok(!message.includes('secret-value'));
  });

  it('when the secret is not a JSON object, the render fails saying so', async () => {
    const config = testConfig({ secrets: ['s'], files: [{ path: 'out', secret: 's', templateFile: join(TEMPLATES, 'dotenv.liquid') }] });
    const outcome = await renderFiles(config, await compileFiles(config), new Map([['s', stringValue('s', 'just text')]]));
    assert.match(outcome.errors[0]!.message, /env_entries: expected a JSON object, got a string$/);
  });
});

describe('java.properties.liquid', () => {
  let classes: string | undefined;

  async function loadWithJava(t: TestContext, text: string): Promise<Record<string, string> | undefined> {
    if (!requireConsumer(t, 'javac', 'a JDK, e.g. apt-get install openjdk-17-jdk-headless')) return undefined;
    if (!classes) {
      classes = join(dir, 'java-classes');
      const compiled = run('javac', ['-d', classes, join(FIXTURES, 'PropsToJson.java')]);
      assert.equal(compiled.status, 0, compiled.stderr);
    }
    const file = join(dir, `app-${Math.random().toString(36).slice(2)}.properties`);
    await writeFile(file, text);
    const result = run('java', ['-cp', classes, 'PropsToJson', file]);
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.toString('utf8')) as Record<string, string>;
  }

  it('when loaded by java.util.Properties, every key and value reads back exactly', async (t) => {
    // Prepare: hand-picked hard cases plus 150 generated pairs, one JVM for all.
    const payload: Record<string, unknown> = {
      'spring.datasource.password': 'p=a:s#s!w\\o"rd',
      'key with spaces': ' leading space, trailing ',
      '#not-a-comment': '!neither',
      'a=b:c': 'C:\\Program Files\\x',
      ' leading-space-key': 'multi\nline\r\nvalue\ttab\fform',
      'ünï 日本 😀': 'ünïcödé 日本 😀 \u007f \u0001',
      empty: '',
      port: 5432,
      flag: true,
      obj: { a: 1 },
    };
    const generated = fc.sample(fc.tuple(fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 20 })), { numRuns: 150, seed: 42 });
    for (const [k, v] of generated) if (k !== '__proto__' && k.isWellFormed() && v.isWellFormed() && !(k in payload)) payload[k] = v;
    const text = await rendered('java.properties.liquid', payload);
    // Act
    const loaded = await loadWithJava(t, text);
    if (!loaded) return;
    // Assess
    assert.match(text, /^[\x20-\x7e\n]*$/, 'the file is printable ASCII');
    const expected = Object.fromEntries(Object.entries(payload).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
    assert.deepEqual(loaded, expected);
  });
});

/** What a PostgreSQL client sent: the StartupMessage parameters and the PasswordMessage. */
interface PgCapture {
  params: Record<string, string>;
  password?: string;
}

/**
 * A fake PostgreSQL server, enough for libpq to log in: it answers SSL and
 * GSS encryption requests with 'N', the StartupMessage with
 * AuthenticationCleartextPassword, records the PasswordMessage, then sends an
 * ErrorResponse. (A real server would need initdb and a user; the point here
 * is what libpq read from the password file, which this captures exactly.)
 */
async function fakePostgres(): Promise<{ port: number; captures: PgCapture[]; close: () => Promise<void> }> {
  const captures: PgCapture[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let capture: PgCapture | undefined;
    let done = false;
    socket.on('data', (chunk) => {
      if (done) return; // e.g. the Terminate message after our ErrorResponse
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (!capture) {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          const body = buf.subarray(8, len);
          buf = buf.subarray(len);
          if (code === 80877103 || code === 80877104) {
            socket.write('N'); // SSLRequest / GSSENCRequest: not supported, go on in plain text
            continue;
          }
          const fields = body.toString('utf8').split('\0');
          const params: Record<string, string> = {};
          for (let i = 0; i + 1 < fields.length && fields[i] !== ''; i += 2) params[fields[i]!] = fields[i + 1]!;
          capture = { params };
          captures.push(capture);
          const auth = Buffer.alloc(9);
          auth.write('R', 0);
          auth.writeInt32BE(8, 1);
          auth.writeInt32BE(3, 5); // AuthenticationCleartextPassword
          socket.write(auth);
        } else {
          if (buf.length < 5) return;
          const len = buf.readInt32BE(1);
          if (buf.length < 1 + len) return;
          const type = String.fromCharCode(buf[0]!);
          const body = buf.subarray(5, 1 + len);
          buf = buf.subarray(1 + len);
          if (type === 'p') capture.password = body.subarray(0, body.indexOf(0)).toString('utf8');
          const fieldsOut = Buffer.from('SFATAL\0VFATAL\0C28P01\0Mfake server: login recorded\0\0', 'utf8');
          const error = Buffer.alloc(5);
          error.write('E', 0);
          error.writeInt32BE(4 + fieldsOut.length, 1);
          done = true;
          socket.end(Buffer.concat([error, fieldsOut]));
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  return {
    port: address.port,
    captures,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Runs psql against the fake server with PGPASSFILE set; resolves when psql exits. */
function psql(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('psql', ['-w', '-X', '-c', 'select 1'], {
      env: { PATH: process.env.PATH, PGSSLMODE: 'disable', PGGSSENCMODE: 'disable', PGCONNECT_TIMEOUT: '10', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('pgpass.liquid', () => {
  let pg: Awaited<ReturnType<typeof fakePostgres>>;
  before(async () => {
    pg = await fakePostgres();
  });
  after(async () => {
    await pg.close();
  });

  async function login(t: TestContext, payload: unknown, connect: { user: string; database: string }): Promise<PgCapture | undefined> {
    if (!requireConsumer(t, 'psql', 'apt-get install postgresql-client')) return undefined;
    const file = join(dir, `pgpass-${pg.captures.length}`);
    // libpq ignores a password file that group or others can read.
    await writeFile(file, await rendered('pgpass.liquid', payload), { mode: 0o600 });
    const before = pg.captures.length;
    const result = await psql({ PGHOST: '127.0.0.1', PGPORT: String(pg.port), PGUSER: connect.user, PGDATABASE: connect.database, PGPASSFILE: file });
    assert.equal(pg.captures.length, before + 1, `psql never reached the server: ${result.stderr}`);
    return pg.captures[before];
  }

  it('when psql connects with PGPASSFILE pointing at the file, libpq sends the password for the matching line', async (t) => {
    // Prepare: user, database and password full of what pgpass must escape.
    const payload = { engine: 'postgres', host: '127.0.0.1', port: pg.port, dbname: 'db:na*me\\', username: 'app:us\\er#1', password: 'p:a\\ss#wo"rd\' $x 😀 *' };
    // Act
    const capture = await login(t, payload, { user: payload.username, database: payload.dbname });
    if (!capture) return;
    // Assess
    assert.equal(capture.params.user, payload.username);
    assert.equal(capture.params.database, payload.dbname);
    assert.equal(capture.password, payload.password);
  });

  it('when host and port are missing and the database is under `database`, the line matches any host and port', async (t) => {
    const payload = { database: 'appdb', username: 'app', password: '#leading-hash' };
    assert.equal(await rendered('pgpass.liquid', payload), '*:*:appdb:app:\\#leading-hash\n');
    const capture = await login(t, payload, { user: 'app', database: 'appdb' });
    if (!capture) return;
    assert.equal(capture.password, payload.password);
  });

  it('when the password has a line break, the render fails (a pgpass line cannot hold it)', async () => {
    const message = await renderError('pgpass.liquid', { username: 'u', password: 'a\nb' });
    assert.match(message, /pgpass: the value contains a line break/);
  });
});

describe('my.cnf.liquid', () => {
  const payload = { engine: 'mysql', host: 'db.internal', port: 3306, username: 'app user', password: `p"a'ss#wo\\rd\n\ttab $\`x\` 😀 ` };

  it('when read by the MySQL/MariaDB client library (my_print_defaults), the [client] options are the exact values', async (t) => {
    if (!requireConsumer(t, 'my_print_defaults', 'apt-get install mariadb-client-core')) return;
    // Prepare: the client library ignores world-writable option files.
    const file = join(dir, 'my.cnf');
    await writeFile(file, await rendered('my.cnf.liquid', payload), { mode: 0o600 });
    // Act
    const result = run('my_print_defaults', [`--defaults-file=${file}`, 'client']);
    // Assess: one --option=value per line; values may hold newlines, so compare the whole output.
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.toString('utf8'), `--user=${payload.username}\n--password=${payload.password}\n--host=${payload.host}\n--port=${payload.port}\n`);
  });

  it('when read by python configparser, it is one [client] section with one line per option', async (t) => {
    if (!requireConsumer(t, 'python3', 'apt-get install python3')) return;
    const file = join(dir, 'my-py.cnf');
    await writeFile(file, await rendered('my.cnf.liquid', payload), { mode: 0o600 });
    const script = 'import configparser, json, sys\nc = configparser.ConfigParser(interpolation=None)\nc.read(sys.argv[1], encoding="utf-8")\nprint(json.dumps({s: dict(c[s]) for s in c.sections()}))';
    const result = run('python3', ['-c', script, file]);
    assert.equal(result.status, 0, result.stderr);
    // configparser does not undo MySQL's quoting: it sees the quoted text.
    assert.deepEqual(JSON.parse(result.stdout.toString('utf8')), {
      client: { user: mycnfQuote(payload.username), password: mycnfQuote(payload.password), host: mycnfQuote(payload.host), port: mycnfQuote(String(payload.port)) },
    });
  });

  it('when host and port are absent, only user and password are written', async () => {
    assert.equal(await rendered('my.cnf.liquid', { username: 'u', password: 'p' }), '[client]\nuser="u"\npassword="p"\n');
  });
});

describe('docker-config.json.liquid', () => {
  it('is JSON whose auths entry for the registry decodes to username:password', async () => {
    const payload = { registry: 'registry.example.com:5000', username: 'robot$ci', password: 'pa:ss"wörd\n' };
    const config = JSON.parse(await rendered('docker-config.json.liquid', payload)) as { auths: Record<string, { auth: string }> };
    assert.deepEqual(Object.keys(config), ['auths']);
    assert.deepEqual(Object.keys(config.auths), [payload.registry]);
    assert.equal(Buffer.from(config.auths[payload.registry]!.auth, 'base64').toString('utf8'), `${payload.username}:${payload.password}`);
  });

  it('when a field is missing, the render fails naming it', async () => {
    assert.match(await renderError('docker-config.json.liquid', { registry: 'r', username: 'u' }), /undefined variable "secret\.password"/);
  });
});

describe('tls-bundle.pem.liquid', () => {
  let ca: string;
  let leaf: string;

  function openssl(args: string[], input?: string): string {
    const result = spawnSync('openssl', args, { cwd: dir, input, timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr.toString());
    return result.stdout.toString('utf8');
  }

  async function makeCerts(): Promise<void> {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl(['req', '-x509', ...ec, '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1']);
    openssl(['req', ...ec, '-subj', '/CN=leaf.test', '-keyout', 'leaf.key', '-out', 'leaf.csr']);
    openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '1']);
    ca = await readFile(join(dir, 'ca.pem'), 'utf8');
    leaf = await readFile(join(dir, 'leaf.pem'), 'utf8');
  }

  it('when read by openssl, the bundle is the certificate then its chain', async (t) => {
    if (!requireConsumer(t, 'openssl', 'apt-get install openssl')) return;
    await makeCerts();
    // Prepare: the certificate without its final newline, the chain with extra blank lines.
    const bundle = await rendered('tls-bundle.pem.liquid', { certificate: leaf.trimEnd(), chain: `${ca}\n\n`, private_key: 'not in the bundle' });
    assert.equal(bundle, `${leaf.trim()}\n${ca.trim()}\n`);
    await writeFile(join(dir, 'bundle.pem'), bundle);
    // Act + Assess
    assert.equal(openssl(['x509', '-noout', '-subject', '-in', 'bundle.pem']).trim(), 'subject=CN = leaf.test');
    const all = openssl(['crl2pkcs7', '-nocrl', '-certfile', 'bundle.pem']);
    const subjects = openssl(['pkcs7', '-print_certs', '-noout'], all).match(/subject=.*/g);
    assert.deepEqual(subjects, ['subject=CN = leaf.test', 'subject=CN = test-ca']);
    assert.match(openssl(['verify', '-CAfile', 'ca.pem', 'bundle.pem']), /bundle\.pem: OK/);
  });

  it('when there is no chain, the bundle is the certificate alone; certificate_chain works as the chain', async () => {
    assert.equal(await rendered('tls-bundle.pem.liquid', { certificate: 'CERT\n' }), 'CERT\n');
    assert.equal(await rendered('tls-bundle.pem.liquid', { certificate: 'CERT', certificate_chain: 'CHAIN' }), 'CERT\nCHAIN\n');
  });
});
