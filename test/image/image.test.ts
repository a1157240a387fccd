// `npm run test:image`: the project's real Dockerfile built with buildah, then
// `init` and `run` from the image as a pod runs them (k8s-examples' command
// lines, UID 65532, read-only root, no capabilities, the secrets on a tmpfs)
// against moto on loopback. Minutes, so not part of `npm test`; .ci/run runs it.
//
// What is NOT real here, and why: the two base images are local STAND-INS
// (test/image/standins.sh: a debootstrapped bookworm with Node from the npm
// registry's Node package for node:24-bookworm-slim; a distroless-like root
// with only that node, its libraries, CA certificates and a passwd entry for
// 65532 for distroless/nodejs24), because no registry can be reached; and no
// container runtime runs, so launch.py does its part (mount namespace,
// read-only bind of the image root, tmpfs and ConfigMap mounts, chroot,
// capabilities dropped, setuid). The kubelet's probes are this test's fetches.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { REPO } from '../support/cli.ts';
import { entrypointFlags, exampleAgentContainers } from '../support/dockerfile.ts';
import { freePort, startMoto, TEST_ROLE_ARN, type Moto } from '../support/moto.ts';
import { stopAll } from '../support/procs.ts';
import { waitUntil } from '../support/wait.ts';
import { buildImage, entrypointOf, imageConfig, launch, missingTools, mountImage, removeImages, standIns, type ImageConfig, type LaunchSpec, type Mounted } from './image.ts';

const CANARY = 'CANARY-image-3f9c1d52';
const TAG = `localhost/secrets-agent-test:${process.pid}`;
const TOKEN_DIR = '/var/run/secrets/eks.amazonaws.com/serviceaccount';
const FS_GROUP = 2000;
const TMPFS_MAGIC = 0x01021994;
const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

describe('the container image (real Dockerfile, buildah, local stand-ins for the base images)', () => {
  let moto: Moto | undefined;
  let dir: string;
  let mounted: Mounted | undefined;
  let config: ImageConfig;
  let standInTags: string[] = [];
  const children: import('node:child_process').ChildProcess[] = [];
  let specs = 0;
  const volumes: string[] = [];

  /** The example ConfigMap's config.yaml and template, laid out as the pod's mount; the listen port made free. */
  async function configDir(listen: string): Promise<string> {
    const cm = parseAllDocuments(await readFile(join(REPO, 'k8s-examples', 'configmap.yaml'), 'utf8')).map((d) => d.toJS() as { kind?: string; data?: Record<string, string> }).find((d) => d.kind === 'ConfigMap')!;
    const out = join(dir, `config-${listen.replace(/\W/g, '_')}`);
    await mkdir(out, { recursive: true });
    for (const [k, v] of Object.entries(cm.data!)) {
      if (k !== 'config.yaml') {
        await writeFile(join(out, k), v);
        continue;
      }
      const c = parseYaml(v) as { server?: { listen: string } };
      assert.equal(c.server?.listen, '0.0.0.0:9102', 'the example listens on the pod IP');
      c.server = { listen }; // a free port on loopback: this machine is shared
      await writeFile(join(out, k), stringify(c));
    }
    await chmod(out, 0o755);
    return out;
  }

  /** The pod's emptyDir (medium: Memory): a tmpfs, group-owned by the fsGroup and setgid as the kubelet makes it, mounted here so the test can read it after the container is gone. */
  async function volume(name: string): Promise<string> {
    const path = join(dir, name);
    await mkdir(path);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `mode=2770,gid=${FS_GROUP},size=16m`, 'tmpfs', path], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    volumes.push(path);
    return path;
  }

  /** The example's three files, group fsGroup, mode 0440, with the secrets' values in them. */
  async function assertFiles(out: string): Promise<void> {
    assert.equal((await statfs(out)).type, TMPFS_MAGIC, 'on a tmpfs');
    for (const f of ['db.env', 'application.properties', 'api-key']) {
      const st = await stat(join(out, f));
      assert.equal(st.mode & 0o777, 0o440, f);
      assert.equal(st.gid, FS_GROUP, f);
    }
    assert.equal(await readFile(join(out, 'api-key'), 'utf8'), `${CANARY}-key`);
    assert.match(await readFile(join(out, 'application.properties'), 'utf8'), new RegExp(`password=${CANARY}-pw`));
  }

  function spec(argv: string[], cfg: string, out: string): LaunchSpec {
    const { uid, gid } = entrypointOf(config);
    return {
      root: mounted!.root,
      argv,
      uid,
      gid,
      groups: [FS_GROUP],
      cwd: config.WorkingDir || '/',
      // The image's ENV, then what EKS (IRSA) sets, with the endpoint pointed at moto.
      env: {
        ...Object.fromEntries((config.Env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
        AWS_REGION: 'us-east-1',
        AWS_ENDPOINT_URL: moto!.url,
        AWS_ROLE_ARN: TEST_ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE: `${TOKEN_DIR}/token`,
        AWS_EC2_METADATA_DISABLED: 'true',
        // The loader says whether it used the image's code cache (agent/loader.ts).
        NODE_DEBUG: 'secrets_agent_code_cache',
      },
      binds: [
        { source: out, target: '/run/secrets/app', readOnly: false },
        { source: cfg, target: '/etc/secrets-agent/config' },
        { source: join(dir, 'token'), target: TOKEN_DIR },
      ],
    };
  }

  async function start(s: LaunchSpec) {
    const child = await launch(s, join(dir, `spec-${specs++}.json`));
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = once(child, 'exit').then(([code, signal]): Ran => ({ code: code as number | null, signal: signal as NodeJS.Signals | null, stdout, stderr }));
    return { child, done, out: () => ({ stdout, stderr }) };
  }

  const exampleLine = async (file: string, init: boolean): Promise<string[]> => {
    const c = (await exampleAgentContainers()).find((x) => x.file === file && x.init === init && x.name === 'secrets-agent');
    assert.ok(c, `k8s-examples/${file}: the agent container`);
    return [...(c.command ?? config.Entrypoint!), ...(c.args ?? config.Cmd ?? [])];
  };

  before(async () => {
    const missing = missingTools();
    if (missing.length) throw new Error(`test:image needs ${missing.join(', ')} (.ci/run installs buildah and debootstrap with apt-get)`);
    dir = await mkdtemp(join(tmpdir(), 'sa-image-'));
    await chmod(dir, 0o755);
    await mkdir(join(dir, 'token'));
    await writeFile(join(dir, 'token', 'token'), 'projected-token');
    await chmod(join(dir, 'token', 'token'), 0o644);
    moto = await startMoto();
    await moto.sm('CreateSecret', { Name: 'prod/shop/db', SecretString: JSON.stringify({ username: 'app', password: `${CANARY}-pw`, host: 'db.internal', port: 5432, dbname: 'shop' }) });
    await moto.sm('CreateSecret', { Name: 'prod/shop/api-key', SecretString: `${CANARY}-key` });
    const bases = standIns();
    standInTags = [bases.build, bases.runtime];
    const built = await buildImage(TAG, bases);
    process.stdout.write(`# stand-ins ${bases.madeSeconds ? `made in ${bases.madeSeconds.toFixed(0)} s` : `from the cache ${bases.dir}`}; image built in ${built.seconds.toFixed(0)} s\n`);
    config = imageConfig(TAG);
    mounted = mountImage(TAG);
  });

  after(async () => {
    await stopAll(children);
    mounted?.remove();
    removeImages(TAG, ...standInTags);
    await moto?.stop();
    for (const v of volumes) spawnSync('umount', [v]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("has the Dockerfile's ENTRYPOINT, CMD run and USER 65532:65532 in its config", async () => {
    assert.deepEqual(config.Entrypoint, ['/nodejs/bin/node', ...(await entrypointFlags()), '/app/secrets-agent.mjs']);
    assert.deepEqual(config.Cmd, ['run']);
    assert.equal(config.User, '65532:65532');
  });

  it('has no shell and no package manager, and its files the agent reads are not writable by anyone but their owner', async () => {
    for (const p of ['/bin/sh', '/usr/bin/sh', '/bin/bash', '/bin/dash', '/usr/bin/env', '/usr/bin/apt', '/usr/bin/dpkg', '/usr/local/bin/npm']) {
      await assert.rejects(stat(join(mounted!.root, p)), { code: 'ENOENT' }, `${p} in the runtime image`);
    }
    // What the image adds: the bundle, its code cache, the templates. Readable by
    // the agent's user; nothing it needs lies in a place only root can write, and
    // nothing of it is group- or world-writable.
    const files: string[] = [];
    for (const top of ['/app', '/etc/secrets-agent']) {
      for (const f of await readdir(join(mounted!.root, top), { recursive: true })) files.push(join(top, f));
    }
    assert.ok(files.includes('/app/secrets-agent.mjs') && files.some((f) => f.startsWith('/app/code-cache/') && f.endsWith('.bin')), files.join(' '));
    // The license and the notices of the third-party code the bundle inlines go with it.
    assert.match(await readFile(join(mounted!.root, '/app/LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/);
    assert.match(await readFile(join(mounted!.root, '/app/THIRD-PARTY-NOTICES'), 'utf8'), /liquidjs/);
    for (const f of files) {
      const st = await stat(join(mounted!.root, f));
      assert.equal(st.mode & 0o022, 0, `${f} is group/world-writable (${(st.mode & 0o7777).toString(8)})`);
      assert.ok(st.mode & 0o004 || st.uid === 65532, `${f} unreadable by 65532`);
    }
  });

  it('`version` prints the package version (as 65532, read-only root)', async (t) => {
    const cfg = await configDir(`127.0.0.1:${await freePort()}`);
    const { done } = await start(spec([...config.Entrypoint!, 'version'], cfg, await volume('version-out')));
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^secrets-agent ${pkg.version.replaceAll('.', '\\.')} `));
    t.diagnostic(`version: ${r.stdout.trim()}`);
  });

  it("init with init-container.yaml's command line: exits 0, files on the tmpfs with fsGroup and 0440, the image's code cache accepted, no canary in its output", async (t) => {
    const cfg = await configDir(`127.0.0.1:${await freePort()}`);
    const out = await volume('init-out');
    const { done } = await start(spec(await exampleLine('init-container.yaml', true), cfg, out));
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /SECRETS_AGENT_CODE_CACHE \d+: \/app\/code-cache\/\S+\.bin: accepted/, 'the cache the image built for this command line is used');
    t.diagnostic(`init: ${JSON.stringify(r.code)}; ${/SECRETS_AGENT_CODE_CACHE.*/.exec(r.stderr)![0]}`);
    await assertFiles(out);
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY));
  });

  it("run with native-sidecar.yaml's args and the image's ENTRYPOINT: /readyz 200, files on the tmpfs, runs as 65532 with no capabilities on a read-only root, SIGTERM exits 0", async (t) => {
    const port = await freePort();
    const cfg = await configDir(`127.0.0.1:${port}`);
    const out = await volume('run-out');
    const argv = await exampleLine('native-sidecar.yaml', true);
    assert.deepEqual(argv.slice(0, -3), config.Entrypoint, 'the sidecar runs the ENTRYPOINT');
    const agent = await start(spec(argv, cfg, out));
    await waitUntil('/readyz answers 200', async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200, 60_000, 100);
    await assertFiles(out);
    // As the kernel sees the process: the image's user, no capabilities at all, no_new_privs, / mounted read-only.
    const status = await readFile(`/proc/${agent.child.pid}/status`, 'utf8');
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(status)![1]!.trim();
    assert.equal(field('Uid').split(/\s+/)[0], '65532');
    assert.equal(field('Gid').split(/\s+/)[0], '65532');
    assert.equal(field('Groups'), String(FS_GROUP));
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(field(cap), /^0+$/, cap);
    assert.equal(field('NoNewPrivs'), '1');
    const rootMount = (await readFile(`/proc/${agent.child.pid}/mountinfo`, 'utf8')).split('\n').find((l) => l.split(' ')[4] === '/');
    assert.match(rootMount!.split(' ')[5]!, /(^|,)ro(,|$)/, `root mount: ${rootMount}`);
    assert.match(agent.out().stderr, /SECRETS_AGENT_CODE_CACHE \d+: \/app\/code-cache\/\S+\.bin: accepted/, 'the ENTRYPOINT\'s cache is used');
    t.diagnostic(`run: ${['Uid', 'Groups', 'CapEff', 'CapBnd', 'NoNewPrivs'].map((f) => `${f} ${field(f)}`).join('; ')}; root mount ${rootMount!.split(' ')[5]}`);
    t.diagnostic(`run: ${/SECRETS_AGENT_CODE_CACHE.*/.exec(agent.out().stderr)![0]}`);
    agent.child.kill('SIGTERM');
    const r = await agent.done;
    assert.equal(r.code, 0, `exit ${r.code} ${r.signal}: ${r.stderr.slice(-2000)}`);
    t.diagnostic(`run: SIGTERM -> exit ${r.code}`);
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY));
  });
});
