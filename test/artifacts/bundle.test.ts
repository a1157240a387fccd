// The shipped artifact: `npm run build` makes dist/secrets-agent.mjs, and that
// one file, copied ALONE into an empty directory (no node_modules anywhere above
// it), runs with plain Node 24 and the Dockerfile's ENTRYPOINT flags: version,
// --help, validate, a full `init` against moto (web identity), and `run`.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { crc32 } from 'node:zlib';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO } from '../support/cli.ts';
import { entrypointFlags } from '../support/dockerfile.ts';
import { agentEnv, startMoto, type Moto } from '../support/moto.ts';
import { startProxy, type Proxy } from '../support/proxy.ts';
import { selfSignedCert } from '../support/tls.ts';
import { stopAll } from '../support/procs.ts';

const CANARY = 'CANARY-bundle-5d1e';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('the bundle (dist/secrets-agent.mjs), alone in an empty directory', () => {
  let dir: string;
  let bundle: string;
  let flags: string[];
  let moto: Moto | undefined;
  const children = new Set<ReturnType<typeof spawn>>();

  /** Run the bundle exactly as the image does: node <ENTRYPOINT flags> secrets-agent.mjs <args>. */
  const run = (args: readonly string[], env: NodeJS.ProcessEnv = cleanEnv(), entry = bundle): Promise<Result> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...flags, entry, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        children.delete(child);
        resolve({ code, stdout, stderr });
      });
    });

  before(async () => {
    const built = spawnSync('npm', ['run', 'build'], { cwd: REPO, encoding: 'utf8', timeout: 180_000 });
    assert.equal(built.status, 0, `npm run build failed:\n${built.stdout}\n${built.stderr}`);
    dir = await mkdtemp(join(tmpdir(), 'sa-bundle-'));
    bundle = join(dir, 'secrets-agent.mjs');
    await copyFile(join(REPO, 'dist', 'secrets-agent.mjs'), bundle);
    flags = await entrypointFlags();
  });

  after(async () => {
    await stopAll(children);
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('when copied, it is the only file there and no node_modules is reachable from it', async () => {
    assert.deepEqual(await readdir(dir), ['secrets-agent.mjs']);
    for (let d = dir; ; d = dirname(d)) {
      await assert.rejects(stat(join(d, 'node_modules')), { code: 'ENOENT' }, `${d}/node_modules would let imports resolve`);
      if (dirname(d) === d) break;
    }
    const head = (await readFile(bundle, 'utf8')).slice(0, 300);
    assert.match(head, /^#!\/usr\/bin\/env node\n/);
  });

  it('is ASCII only, so Node decodes it, and V8 keeps its source, as a one-byte string (half the private memory of a two-byte one)', async () => {
    const bytes = await readFile(bundle);
    const at = bytes.findIndex((b) => b > 0x7f);
    assert.equal(at, -1, `a byte above 0x7F at offset ${at} (scripts/build.ts asciiSource escapes such characters): ${bytes.subarray(Math.max(0, at - 40), at + 20).toString('utf8')}`);
  });

  it('runs `version` and prints the package version', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
    const r = await run(['version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `secrets-agent ${pkg.version} (node ${process.version})\n`);
  });

  it('runs under any file name (no check of its own name): renamed, it still prints the version', async () => {
    // The original entry ran main() only when argv[1] matched main.ts|secrets-agent(.mjs):
    // renamed, the bundle exited 0 having done nothing.
    const renamed = join(dir, 'renamed', 'agent.mjs');
    await mkdir(dirname(renamed), { recursive: true });
    await copyFile(bundle, renamed);
    const r = await run(['version'], cleanEnv(), renamed);
    await rm(dirname(renamed), { recursive: true, force: true });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^secrets-agent \S+ \(node v/);
  });

  it('runs `--help`, exits 0 and lists the commands', async () => {
    const r = await run(['--help']);
    assert.equal(r.code, 0, r.stderr);
    for (const cmd of ['init', 'run', 'validate', 'render', 'version']) assert.match(r.stdout, new RegExp(`^  ${cmd}\\b`, 'm'));
  });

  it('when a usage error is made, it exits 2 (the CLI contract survives bundling)', async () => {
    const r = await run(['no-such-command']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "no-such-command"/);
  });

  describe('against moto with web identity credentials', () => {
    let env: NodeJS.ProcessEnv;
    let apiKeyArn: string;
    const config = () => `
source:
  region: us-east-1
outputDir: out
secrets:
  db: { id: bundle/db }
  api_key: { id: "${apiKeyArn}" }
files:
  - path: db.env
    templateFile: templates/dotenv.liquid
    secret: db
    mode: "0440"
  - path: api-key
    secret: api_key
  - path: conf/summary.txt
    template: "{{ secrets.db.username }}@{{ secrets.db.host }} {{ meta.api_key.name }}"
`;

    before(async () => {
      moto = await startMoto();
      const token = join(dir, 'token');
      await writeFile(token, 'eyJhbGciOiJSUzI1NiJ9.bundle-test-token.sig');
      env = agentEnv(moto, token);
      await moto.sm('CreateSecret', { Name: 'bundle/db', SecretString: JSON.stringify({ username: 'app', password: `pw "${CANARY}"`, host: 'db.internal' }) });
      apiKeyArn = (await moto.sm<{ ARN: string }>('CreateSecret', { Name: 'bundle/api-key', SecretString: `key-${CANARY}` })).ARN;
      // The image ships templates/ next to nothing else; lay it out the same way.
      await mkdir(join(dir, 'templates'));
      await copyFile(join(REPO, 'templates', 'dotenv.liquid'), join(dir, 'templates', 'dotenv.liquid'));
      await writeFile(join(dir, 'config.yaml'), config());
    });

    it('validates the config offline', async () => {
      const r = await run(['validate', '--config', 'config.yaml']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /ok \(2 secret\(s\), 3 file\(s\)/);
    });

    it('runs a full `init`: every file written with the right bytes and modes, in the ..data layout', async () => {
      const r = await run(['init', '--config', 'config.yaml', '--timeout', '30s'], env);
      assert.equal(r.code, 0, r.stderr);
      const out = join(dir, 'out');
      assert.equal(await readFile(join(out, 'db.env'), 'utf8'), `username="app"\npassword="pw \\"${CANARY}\\""\nhost="db.internal"\n`);
      assert.equal(await readFile(join(out, 'api-key'), 'utf8'), `key-${CANARY}`);
      assert.equal(await readFile(join(out, 'conf', 'summary.txt'), 'utf8'), 'app@db.internal bundle/api-key');
      assert.equal((await stat(join(out, 'db.env'))).mode & 0o777, 0o440);
      assert.equal((await stat(join(out, 'api-key'))).mode & 0o777, 0o400);
      assert.ok((await lstat(join(out, 'db.env'))).isSymbolicLink());
      assert.match(await readlink(join(out, '..data')), /^\.\.\d{4}_\d\d_\d\d_/);
      // Never a value in the output.
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY));
    });

    it('runs `run`: ready after the first render, serves /readyz and /metrics, exits 0 on SIGTERM', async () => {
      const cfg = join(dir, 'run.yaml');
      await writeFile(cfg, `${config().replace('outputDir: out', 'outputDir: out-run')}server:\n  listen: "127.0.0.1:0"\n`);
      const child = spawn(process.execPath, [...flags, bundle, 'run', '--config', cfg], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
      children.add(child);
      let stderr = '';
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready in 30 s:\n${stderr.slice(-2000)}`)), 30_000);
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (/first render complete/.test(stderr) && /serving \/metrics/.test(stderr)) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.on('exit', () => reject(new Error(`exited early:\n${stderr.slice(-2000)}`)));
      });
      const address = /"address":"([^"]+)"/.exec(stderr)?.[1];
      assert.ok(address, stderr);
      assert.equal((await fetch(`http://${address}/readyz`)).status, 200);
      const metrics = await (await fetch(`http://${address}/metrics`)).text();
      assert.match(metrics, /^secrets_agent_ready 1$/m);
      // `version` and build_info name the same version: package.json's (the release workflow tags v<that>).
      const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
      assert.match(metrics, new RegExp(`^secrets_agent_build_info\\{version="${version.replaceAll('.', '\\.')}",node="${process.version.replaceAll('.', '\\.')}"\\} 1$`, 'm'));
      assert.match(metrics, /^process_resident_memory_bytes /m, 'prom-client default metrics work when bundled');
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr.slice(-2000));
      children.delete(child);
      assert.doesNotMatch(stderr, new RegExp(CANARY));
    });

    // AWS endpoints are HTTPS; moto is plain HTTP. A TLS-terminating proxy in
    // front of moto, with a certificate made here by openssl for 127.0.0.1,
    // puts the real TLS client (the bundle's lazily loaded node:https and
    // node:tls) on the path, CA trust included.
    describe('over HTTPS, as AWS serves', () => {
      let tlsProxy: Proxy;
      let ca: string;
      before(async () => {
        const tls = await selfSignedCert(dir);
        ca = tls.caFile;
        tlsProxy = await startProxy((moto as Moto).url, { tls });
      });
      after(async () => tlsProxy?.close());

      it('when the endpoint CA is trusted (NODE_EXTRA_CA_CERTS), `init` fetches over TLS and writes the files', async () => {
        const r = await run(['init', '--config', 'config.yaml', '--timeout', '30s'], { ...env, AWS_ENDPOINT_URL: tlsProxy.url, NODE_EXTRA_CA_CERTS: ca });
        assert.equal(r.code, 0, r.stderr);
        assert.ok(tlsProxy.count('AssumeRoleWithWebIdentity') >= 1, 'STS went over TLS');
        assert.ok(tlsProxy.count('BatchGetSecretValue') + tlsProxy.count('GetSecretValue') >= 1, 'Secrets Manager went over TLS');
        assert.equal(await readFile(join(dir, 'out', 'api-key'), 'utf8'), `key-${CANARY}`);
        assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY));
      });

      it('when the certificate is not trusted, `init` fails with exit 1, says why, and sends nothing', async () => {
        const before = tlsProxy.requests.length;
        const r = await run(['init', '--config', 'config.yaml', '--timeout', '5s'], { ...env, AWS_ENDPOINT_URL: tlsProxy.url });
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stdout + r.stderr, /self[- ]signed certificate/i);
        assert.equal(tlsProxy.requests.length, before, 'no request got past the TLS handshake');
      });
    });
  });
});

/** The host environment without anything that could help the bundle find modules or AWS credentials. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && !['NODE_OPTIONS', 'NODE_PATH', 'NODE_TEST_CONTEXT'].includes(k)) env[k] = v;
  }
  return env;
}

// The code cache (agent/loader.ts): a cache that is missing, made for another
// bundle, truncated, corrupt or made with other V8 flags is skipped without a
// word: the same files, the same exit code, the same output as with none.
describe('the bundle with its code cache (agent/loader.ts)', () => {
  let dir: string;
  let bundle: string;
  let cacheDir: string;
  let flags: string[];
  const SIDECAR = ['--disable-sigusr1', '--lite-mode', '--max-semi-space-size=1'];

  const node = (args: readonly string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, args, { cwd: dir, env: { ...cleanEnv(), ...env }, encoding: 'utf8', timeout: 60_000 });
  /** A `render` on the file source into a fresh dir: its exit code, files, stdout and log messages (times stripped). */
  const render = async (env: NodeJS.ProcessEnv = {}, runFlags = flags) => {
    const out = await mkdtemp(join(dir, 'out-'));
    const r = node([...runFlags, bundle, 'render', '--config', 'config.yaml', '--output-dir', out], env);
    // The files as the app sees them (through the ..data links), and each log line's level and message.
    const files: Record<string, string> = {};
    for (const f of (await readdir(out)).filter((n) => !n.startsWith('..')).sort()) files[f] = await readFile(join(out, f), 'utf8');
    const msgs = (s: string) => s.split('\n').filter(Boolean).map((l) => l.replace(/^.*"level":"(\w+)".*"msg":"([^"]*)".*$/, '$1 $2').replaceAll(out, '<out>'));
    return { code: r.status, files, stdout: msgs(r.stdout), stderr: msgs(r.stderr) };
  };
  const cacheFiles = async (): Promise<string[]> => (await readdir(cacheDir).catch(() => [])).filter((f) => f.endsWith('.bin')).map((f) => join(cacheDir, f));
  const debugOf = (env: NodeJS.ProcessEnv = {}, runFlags = flags): string => node([...runFlags, bundle, 'version'], { ...env, NODE_DEBUG: 'secrets_agent_code_cache' }).stderr;

  before(async () => {
    const built = spawnSync('npm', ['run', 'build'], { cwd: REPO, encoding: 'utf8', timeout: 180_000 });
    assert.equal(built.status, 0, `npm run build failed:\n${built.stdout}\n${built.stderr}`);
    dir = await mkdtemp(join(tmpdir(), 'sa-code-cache-'));
    bundle = join(dir, 'agent.mjs');
    cacheDir = join(dir, 'code-cache');
    await copyFile(join(REPO, 'dist', 'secrets-agent.mjs'), bundle);
    await copyFile(join(REPO, 'dist', 'code-cache-warmup.mjs'), join(dir, 'warmup.mjs'));
    flags = (await entrypointFlags()).filter((f) => f !== '--lite-mode');
    await writeFile(join(dir, 'secrets.yaml'), `app/db: { username: u-${CANARY}, password: p, port: 5432 }\napp/key: "k-${CANARY}"\n`);
    await writeFile(
      join(dir, 'config.yaml'),
      [
        'source: { type: file, path: secrets.yaml }',
        'outputDir: out',
        'secrets: { db: { id: app/db }, key: { id: app/key } }',
        'files:',
        '  - { path: key, secret: key }',
        '  - { path: user, secret: db, key: username }',
        '  - path: db.env',
        '    secret: db',
        '    template: "{% for kv in secrets.db %}{{ kv[0] | upcase }}={{ kv[1] }}\\n{% endfor %}"',
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let reference: Awaited<ReturnType<typeof render>>;
  it('with no cache, it renders and writes nothing else (no cache is made unless asked)', async () => {
    reference = await render();
    assert.equal(reference.code, 0, reference.stderr.join('\n'));
    assert.equal(reference.files.key, `k-${CANARY}`);
    assert.match(reference.files['db.env']!, /^USERNAME=u-/);
    assert.deepEqual(await cacheFiles(), []);
    assert.match(debugOf(), /code-cache\/\S+\.bin: none/);
  });

  it('the warm-up makes one cache per flag set, which V8 accepts, and the output is the same', async () => {
    for (const f of [flags, SIDECAR]) {
      const r = node([...f, join(dir, 'warmup.mjs'), bundle]);
      assert.equal(r.status, 0, r.stderr);
    }
    assert.equal((await cacheFiles()).length, 2);
    assert.match(debugOf(), /: accepted/);
    assert.match(debugOf({}, SIDECAR), /: accepted/);
    assert.deepEqual(await render(), reference);
  });

  /** Replace the cache for `flags` with `bytes`, run, and restore it. */
  const withCache = async (bytes: (good: Buffer, all: Map<string, Buffer>) => Buffer, check: (debug: string) => void): Promise<void> => {
    const all = new Map<string, Buffer>();
    for (const f of await cacheFiles()) all.set(f, await readFile(f));
    const mine = /: (\S+\.bin): accepted/.exec(debugOf())?.[1];
    assert.ok(mine && all.has(mine), 'the cache for these flags exists');
    try {
      await writeFile(mine, bytes(all.get(mine)!, all));
      check(debugOf());
      assert.deepEqual(await render(), reference);
    } finally {
      await writeFile(mine, all.get(mine)!);
    }
  };

  it('a truncated cache is skipped silently: same files, exit code and output', async () => {
    await withCache((good) => good.subarray(0, Math.floor(good.length / 2)), (d) => assert.match(d, /: skipped/));
  });

  it('a corrupt cache (bytes changed in the payload) is skipped silently', async () => {
    await withCache((good) => {
      const bad = Buffer.from(good);
      for (let i = Math.floor(bad.length / 2); i < bad.length / 2 + 64; i++) bad[i] = bad[i]! ^ 0xff;
      return bad;
    }, (d) => assert.match(d, /: skipped/));
  });

  it('a cache from another bundle (its header) is skipped silently', async () => {
    await withCache((good) => Buffer.from(good.toString('latin1').replace(/^(secrets-agent code cache v1 \| )[0-9a-f]{16}/, '$10123456789abcdef'), 'latin1'), (d) => assert.match(d, /: skipped/));
  });

  it('a cache made with other V8 flags, or for another script, under the right header, is rejected by V8 and the code compiled from source', async () => {
    const reheader = (payload: Buffer, good: Buffer): Buffer => {
      const header = good.subarray(0, good.indexOf(10)).toString('latin1').split(' | ');
      return Buffer.concat([Buffer.from(`${header[0]} | ${header[1]} | ${payload.length} | ${crc32(payload).toString(16)}\n`, 'latin1'), payload]);
    };
    // The sidecar's cache (--lite-mode), renamed and re-headed as this flag set's.
    await withCache((good, all) => {
      const other = [...all].find(([, b]) => b.compare(good) !== 0)![1];
      return reheader(other.subarray(other.indexOf(10) + 1), good);
    }, (d) => assert.match(d, /: rejected by V8/));
    // A cache of another script, made with these flags.
    const tiny = node([...flags, '-e', 'process.stdout.write(new (require("node:vm").Script)("1+1").createCachedData().toString("base64"))']);
    await withCache((good) => reheader(Buffer.from(tiny.stdout, 'base64'), good), (d) => assert.match(d, /: rejected by V8/));
  });

  it('a process with V8 flags no cache was made for looks for another file, finds none, and renders the same', async () => {
    assert.match(debugOf({}, [...flags, '--no-opt']), /: none/);
    assert.deepEqual(await render({}, [...flags, '--no-opt']), reference);
  });
});
