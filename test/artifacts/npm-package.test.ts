// The npm package as a user gets it: `npm pack` (its prepack builds the
// bundle), installed from the tarball into an empty prefix with the network
// off (`--offline`: the bundle needs no dependencies), then run as
// `secrets-agent …` by the machine's own Node and npm, the ones found on PATH
// outside node_modules/.bin (not the Node 24 the project pins: on this machine
// that is Node 20). `convert eso`, `inject` and `validate` are the workstation
// commands; docs/install.md says which Node versions the package supports
// (package.json `engines`) and why.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { IMAGE } from '../../agent/deploy.ts';
import { REPO } from '../support/cli.ts';

/** PATH without any node_modules/.bin: what a user's shell has. */
const SYSTEM_PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((d) => d && !/node_modules[\\/]\.bin/.test(d))
  .join(delimiter);

/** The first `name` on the system PATH (a missing one is a failure: CI installs Node and npm). */
function onSystemPath(name: string): string {
  const found = SYSTEM_PATH.split(delimiter).map((d) => join(d, name)).find((p) => existsSync(p));
  assert.ok(found, `no ${name} on PATH outside node_modules/.bin (${SYSTEM_PATH}): install Node.js and npm`);
  return found;
}

describe('the npm package (npm pack, installed into an empty prefix, run by the system Node)', () => {
  let dir: string;
  let prefix: string;
  let systemNode: string;
  let systemNodeVersion: string;
  let files: string[] = [];
  let pkg: { version: string; engines: { node: string }; bin: Record<string, string>; files: string[]; private?: boolean; dependencies?: object };

  /** `secrets-agent <args>` as a user's shell runs it: the installed bin first on PATH, then the system's. */
  const cli = (args: readonly string[], input?: string, env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> =>
    spawnSync('secrets-agent', args, {
      cwd: REPO,
      encoding: 'utf8',
      input,
      timeout: 60_000,
      env: { HOME: dir, PATH: [join(prefix, 'bin'), SYSTEM_PATH].join(delimiter), LANG: 'C.UTF-8', ...env },
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-npm-'));
    prefix = join(dir, 'prefix');
    systemNode = onSystemPath('node');
    systemNodeVersion = spawnSync(systemNode, ['--version'], { encoding: 'utf8' }).stdout.trim();
    pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as typeof pkg;
    // npm pack runs prepack (npm run build, with the project's Node 24 as npm scripts put node_modules/.bin first).
    const packed = spawnSync(onSystemPath('npm'), ['pack', '--json', '--pack-destination', dir], { cwd: REPO, encoding: 'utf8', timeout: 300_000, env: { ...process.env, PATH: process.env.PATH } });
    assert.equal(packed.status, 0, `npm pack failed:\n${packed.stdout}\n${packed.stderr}`);
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info!.files.map((f) => f.path).sort();
    const installed = spawnSync(onSystemPath('npm'), ['install', '--global', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', join(dir, info!.filename)], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { HOME: dir, PATH: SYSTEM_PATH },
    });
    assert.equal(installed.status, 0, `npm install of the tarball failed:\n${installed.stdout}\n${installed.stderr}`);
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is publishable: not private, no runtime dependencies (the bundle holds them), a bin, a prepack build, an engines floor', () => {
    assert.notEqual(pkg.private, true);
    assert.equal(pkg.dependencies, undefined, 'the bundle inlines every dependency: an install must fetch nothing');
    assert.deepEqual(pkg.bin, { 'secrets-agent': 'dist/secrets-agent.mjs' });
    assert.match(pkg.engines.node, /^\^20\.\d+\.\d+ \|\| >=22\.\d+\.\d+$/);
  });

  it('holds the bundle, its licenses, the README and CHANGELOG, and nothing else (no source map, no sources)', () => {
    assert.deepEqual(files, ['CHANGELOG.md', 'LICENSE', 'README.md', 'dist/THIRD-PARTY-NOTICES', 'dist/secrets-agent.mjs', 'package.json']);
  });

  it('`secrets-agent version` runs on the system Node and prints the package version', () => {
    const r = cli(['version']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `secrets-agent ${pkg.version} (node ${systemNodeVersion})`);
    process.stdout.write(`# installed secrets-agent ${pkg.version} ran on the system node ${systemNodeVersion} (${systemNode})\n`);
  });

  it('`secrets-agent convert eso`, then `validate` of its output, then `inject`, on the system Node', async () => {
    const esoFiles = ['examples/eso/secretstore.yaml', 'examples/eso/externalsecret.yaml'];
    const converted = cli(['convert', 'eso', '--output-dir', '/etc/app-secrets', ...esoFiles]);
    assert.equal(converted.status, 0, converted.stderr);
    assert.match(converted.stdout, /^secrets:\n {2}db:\n {4}id: prod\/shop\/db$/m);
    const config = join(dir, 'config.yaml');
    await writeFile(config, converted.stdout);
    const validated = cli(['validate', '--config', config]);
    assert.equal(validated.status, 0, validated.stderr);

    const injected = cli(['inject', ...esoFiles.flatMap((f) => ['--from-eso', f]), 'examples/eso/deployment.yaml']);
    assert.equal(injected.status, 0, injected.stderr);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const docs = parseAllDocuments(injected.stdout).map((d) => d.toJS() as Record<string, any>);
    const deployment = docs.find((d) => d.kind === 'Deployment')!;
    const agent = deployment.spec.template.spec.initContainers[0];
    assert.equal(agent.name, 'secrets-agent');
    assert.equal(agent.image, IMAGE, 'inject defaults to this version\'s released image');
  });

  it('on a Node older than `engines` (no zlib.crc32) it exits 2 naming the Node versions it needs, before anything runs', async () => {
    // An older Node cannot be installed here for a test: the system Node plays
    // one, with zlib.crc32 (the newest API the bundle needs, docs/install.md)
    // removed before the bundle loads. By hand, Node v20.14.0 prints the same line.
    const preload = join(dir, 'no-crc32.cjs');
    await writeFile(preload, "delete require('node:zlib').crc32;\nrequire('node:module').syncBuiltinESMExports();\n");
    const r = cli(['version'], undefined, { NODE_OPTIONS: `--require=${preload}` });
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `secrets-agent needs Node.js ${pkg.engines.node} (package.json "engines"); this is Node.js ${systemNodeVersion}: install a newer Node.js (docs/install.md)\n`);
  });

  it('`secrets-agent validate` of a bad config is exit 2 with file:line', async () => {
    const config = join(dir, 'bad.yaml');
    await writeFile(config, `source: { type: aws, region: us-east-1 }\noutputDir: /tmp/out\nsecrets:\n  db: { id: prod/db }\nfiles:\n  - path: x\n    secret: nope\n    template: "x"\n`);
    const r = cli(['validate', '--config', config]);
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /bad\.yaml:\d+/);
  });
});
