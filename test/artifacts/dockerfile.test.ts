// The Dockerfile as a document, in `npm test`: parsed with dockerfile-ast (its
// base images as their ARG defaults, the pins), every rule checked, and two
// cheap replays: the code-cache stage with the same node, flags and UIDs, and
// the build stage (only the files its COPY lines bring, then its `npm run
// build`). The real build with buildah, and the image run as a pod runs it, is
// `npm run test:image` (test/image/image.test.ts): minutes, so not here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, readdir, realpath, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, matchesGlob, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DockerfileParser, type Copy, type Env, type From, type Instruction, type JSONInstruction } from 'dockerfile-ast';
import { REPO } from '../support/cli.ts';
import { baseImageArgs, exampleAgentContainers, withBaseImages } from '../support/dockerfile.ts';

const raw = await readFile(join(REPO, 'Dockerfile'), 'utf8');
// The file as built by default: each FROM ${ARG} as that ARG's default.
const text = withBaseImages(raw);
const dockerfile = DockerfileParser.parse(text);
const froms = dockerfile.getFROMs();

interface Stage {
  from: From;
  instructions: Instruction[];
}

/** Instructions grouped by stage (a stage runs from its FROM to the next). */
function stages(): Stage[] {
  const out: Stage[] = [];
  for (const ins of dockerfile.getInstructions()) {
    if (ins.getKeyword() === 'FROM') out.push({ from: ins as From, instructions: [] });
    else out.at(-1)?.instructions.push(ins);
  }
  return out;
}

const all = stages();
const buildStage = all[0]!;
const finalStage = all.at(-1)!;
const keyword = (stage: Stage, k: string): Instruction[] => stage.instructions.filter((i) => i.getKeyword() === k);
const args = (ins: Instruction): string[] => ins.getArguments().map((a) => a.getValue());
const copySources = (c: Copy): string[] => args(c).slice(0, -1);
/** A flag's value (dockerfile-ast's getFromFlag() is null once a COPY has two flags). */
const flag = (c: Copy, name: string): string | undefined => c.getFlags().find((f) => f.getName() === name)?.getValue() ?? undefined;
const jsonArgs = (ins: Instruction): string[] | undefined => {
  const raw = ins.getArgumentsContent() ?? '';
  if (!raw.trim().startsWith('[')) return undefined;
  return (ins as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue());
};

/** Every `command` a k8s example sets on a container running the agent image. */
async function exampleCommands(): Promise<{ where: string; command: string[] }[]> {
  return (await exampleAgentContainers()).flatMap((c) => (c.command ? [{ where: `k8s-examples/${c.file} ${c.name}`, command: c.command }] : []));
}

describe('Dockerfile', () => {
  it('when parsed, it has a build stage and a separate runtime stage', () => {
    assert.ok(froms.length >= 2, 'multi-stage: at least two FROM');
    assert.equal(buildStage.from.getBuildStage(), 'build');
    assert.notEqual(finalStage, buildStage);
    assert.equal(finalStage.from.getBuildStage(), null, 'the last stage is the image');
  });

  it('takes both base images from build arguments declared before the first FROM, the code-cache stage the same as the runtime', () => {
    const rawFroms = DockerfileParser.parse(raw).getFROMs().map((f) => f.getArgumentsContent()!.split(/\s+/)[0]);
    assert.deepEqual(rawFroms, ['${BUILD_IMAGE}', '${RUNTIME_IMAGE}', '${RUNTIME_IMAGE}']);
    assert.deepEqual(Object.keys(baseImageArgs(raw)).sort(), ['BUILD_IMAGE', 'RUNTIME_IMAGE']);
    // An override changes the FROM lines and nothing else (what test:image builds).
    const local = withBaseImages(raw, { BUILD_IMAGE: 'localhost/b:1', RUNTIME_IMAGE: 'localhost/r:1' });
    assert.deepEqual(DockerfileParser.parse(local).getFROMs().map((f) => f.getImage()), ['localhost/b:1', 'localhost/r:1', 'localhost/r:1']);
  });

  it('pins every base image by an explicit Node 24 version and a sha256 digest, never latest', () => {
    for (const from of froms) {
      const image = from.getImage() ?? '';
      assert.match(from.getImageDigest() ?? '', /^sha256:[0-9a-f]{64}$/, `${image}: digest`);
      assert.notEqual(from.getImageTag(), 'latest', image);
      assert.ok(from.getImageTag(), `${image}: a tag says which release the digest is`);
    }
    // Build stage: the official image at the exact Node version the tests run (package-lock's `node`).
    const lockNode = spawnSync(process.execPath, ['-p', 'require("./package-lock.json").packages["node_modules/node"].version'], { cwd: REPO, encoding: 'utf8' }).stdout.trim();
    assert.equal(buildStage.from.getImageName(), 'node');
    assert.match(buildStage.from.getImageTag()!, /^24\.\d+\.\d+-bookworm-slim$/);
    assert.equal(buildStage.from.getImageTag()!.split('-')[0], lockNode, 'build stage Node = the Node the tests use');
    // Runtime: distroless; the major version is in the image name.
    assert.equal(finalStage.from.getRegistry(), 'gcr.io');
    assert.match(finalStage.from.getImageName()!, /^distroless\/nodejs24-debian\d+$/);
  });

  it('builds with exactly the commands CI runs: npm ci (as .ci/run) and npm run build (as test/artifacts/bundle.test.ts)', async () => {
    const runs = keyword(buildStage, 'RUN').map((r) => r.getArgumentsContent());
    assert.deepEqual(runs, ['npm ci --no-audit --no-fund', 'npm run build']);
    const ci = await readFile(join(REPO, '.ci', 'run'), 'utf8');
    assert.match(ci, /^npm ci --no-audit --no-fund$/m, '.ci/run installs with the same command');
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.build, 'node scripts/build.ts');
    const bundleTest = await readFile(join(REPO, 'test', 'artifacts', 'bundle.test.ts'), 'utf8');
    assert.match(bundleTest, /\['run', 'build'\]/, 'test/artifacts/bundle.test.ts runs npm run build');
  });

  it('runs the final image as a numeric non-root user', () => {
    const users = keyword(finalStage, 'USER');
    assert.equal(users.length, 1);
    const [uid, gid] = users[0]!.getArgumentsContent()!.split(':');
    assert.match(uid!, /^\d+$/, 'numeric, so runAsNonRoot can check it');
    assert.notEqual(Number(uid), 0);
    if (gid !== undefined) assert.notEqual(Number(gid), 0);
    // Nothing after USER switches back.
    const last = finalStage.instructions.findLastIndex((i) => i.getKeyword() === 'USER');
    assert.ok(finalStage.instructions.slice(last + 1).every((i) => !['USER', 'RUN'].includes(i.getKeyword())));
  });

  it('copies only the bundle (from the build stage), the licenses, its code cache and the ready-made templates into the final image', async () => {
    const copies = keyword(finalStage, 'COPY') as Copy[];
    assert.equal(keyword(finalStage, 'ADD').length, 0);
    assert.equal(keyword(finalStage, 'RUN').length, 0, 'no shell in distroless: nothing to RUN');
    const described = copies.map((c) => ({ from: flag(c, 'from') ?? null, src: copySources(c), dest: args(c).at(-1) }));
    assert.deepEqual(described, [
      { from: 'build', src: ['/src/dist/secrets-agent.mjs'], dest: '/app/secrets-agent.mjs' },
      { from: null, src: ['LICENSE'], dest: '/app/LICENSE' },
      { from: 'build', src: ['/src/dist/THIRD-PARTY-NOTICES'], dest: '/app/THIRD-PARTY-NOTICES' },
      { from: 'code-cache', src: ['/tmp/code-cache'], dest: '/app/code-cache' },
      { from: null, src: ['templates/*.liquid'], dest: '/etc/secrets-agent/templates/' },
    ]);
    const templates = (await readdir(join(REPO, 'templates'))).filter((f) => matchesGlob(`templates/${f}`, 'templates/*.liquid'));
    assert.ok(templates.length >= 5, `ready-made templates found: ${templates.join(', ')}`);
  });

  it('has no ENV or ARG that looks like a secret, in any stage', () => {
    const names: string[] = [];
    for (const env of dockerfile.getENVs()) for (const p of env.getProperties()) names.push(p.getName());
    for (const arg of dockerfile.getARGs()) names.push(arg.getProperty()?.getName() ?? '');
    for (const name of names) assert.doesNotMatch(name, /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i, name);
    assert.doesNotMatch(raw, /AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)/);
  });

  it('starts the agent in exec form (no shell): node, its flags, /app/secrets-agent.mjs; CMD run', () => {
    const [entrypoint, ...more] = keyword(finalStage, 'ENTRYPOINT');
    assert.equal(more.length, 0);
    const ep = jsonArgs(entrypoint!);
    assert.ok(ep, 'ENTRYPOINT must be a JSON array');
    assert.equal(ep[0], '/nodejs/bin/node');
    assert.equal(ep.at(-1), '/app/secrets-agent.mjs');
    for (const flag of ep.slice(1, -1)) assert.match(flag, /^--[a-z][a-z0-9-]*(=\S+)?$/);
    assert.deepEqual(jsonArgs(keyword(finalStage, 'CMD')[0]!), ['run']);
  });

  it('sends the build context only what the COPY lines need (.dockerignore)', async () => {
    const lines = (await readFile(join(REPO, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.equal(lines[0], '*', 'deny by default');
    const allowed = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    const included = (path: string): boolean => allowed.some((p) => path === p || path.startsWith(`${p}/`) || matchesGlob(path, p));
    for (const stage of all) {
      for (const c of keyword(stage, 'COPY') as Copy[]) {
        if (flag(c, 'from')) continue;
        for (const src of copySources(c)) {
          const probe = src.includes('*') ? src.replace('*', 'example') : src.replace(/\/$/, '');
          assert.ok(included(probe), `${src} is copied but .dockerignore leaves it out`);
        }
      }
    }
    for (const secretish of ['.env', 'node_modules/x', 'dist/secrets-agent.mjs', 'out/db.env', 'examples/dev/secrets.yaml']) {
      assert.ok(!included(secretish), `${secretish} must stay out of the build context`);
    }
  });

  describe('the code-cache stage', () => {
    const cacheStage = all.find((st) => st.from.getBuildStage() === 'code-cache');
    const env = (stage: Stage, name: string): string | undefined =>
      (keyword(stage, 'ENV') as Env[]).flatMap((e) => e.getProperties()).find((p) => p.getName() === name)?.getValue() ?? undefined;
    const entrypoint = (): string[] => jsonArgs(keyword(finalStage, 'ENTRYPOINT')[0]!)!;
    const warmRuns = (): string[][] => keyword(cacheStage!, 'RUN').map((r) => jsonArgs(r)!);
    const user = (stage: Stage): string => keyword(stage, 'USER').at(-1)!.getArgumentsContent()!;
    const cacheCopy = (): Copy => (keyword(finalStage, 'COPY') as Copy[]).find((c) => flag(c, 'from') === 'code-cache')!;
    const stageCopies = (): string[][] => (keyword(cacheStage!, 'COPY') as Copy[]).map((c) => [flag(c, 'from')!, ...args(c)]);
    const cacheDir = (): string => warmRuns()[0]!.at(-1)!;
    const warmupScript = (): string => stageCopies().find((c) => c[1] === '/src/dist/code-cache-warmup.mjs')![2]!;

    it('runs FROM the runtime image digest, as the runtime USER, a warm-up once per node command line the containers use', async () => {
      // The cache is keyed by node's version and V8's flags (agent/loader.ts):
      // any difference and the image would ship a cache that is never used.
      assert.ok(cacheStage, 'a stage named code-cache');
      assert.equal(cacheStage.from.getImage(), finalStage.from.getImage());
      assert.equal(cacheStage.from.getImageDigest(), finalStage.from.getImageDigest());
      assert.equal(user(cacheStage), user(finalStage));
      assert.deepEqual(stageCopies(), [
        ['build', '/src/dist/secrets-agent.mjs', entrypoint().at(-1)],
        ['build', '/src/dist/code-cache-warmup.mjs', warmupScript()],
      ]);
      // Exec form (no shell in distroless): a container's node and flags, then the warm-up, the bundle the image runs and where the cache goes.
      assert.ok(warmRuns().every((r) => r.at(-3) === warmupScript() && r.at(-2) === entrypoint().at(-1) && r.at(-1) === cacheDir()));
      const warmed = warmRuns().map((r) => JSON.stringify(r.slice(0, -3)));
      const line = (command: string[]): string => JSON.stringify(command.slice(0, -1));
      assert.ok(warmed.includes(line(entrypoint())), 'the ENTRYPOINT (the sidecar) is warmed');
      for (const c of await exampleCommands()) assert.ok(warmed.includes(line(c.command)), `${c.where}: command ${JSON.stringify(c.command)} has no code cache`);
      assert.ok(warmed.length >= 2, 'the init containers command line is warmed too');
      // What the stage writes is what the final stage copies, where the loader looks: code-cache/ next to the bundle.
      assert.deepEqual(copySources(cacheCopy()), [cacheDir()]);
      assert.equal(flag(cacheCopy(), 'chown'), user(finalStage));
      assert.equal(args(cacheCopy()).at(-1), join(dirname(entrypoint().at(-1)!), 'code-cache'));
      assert.equal(env(finalStage, 'SECRETS_AGENT_CODE_CACHE'), undefined, 'the default location');
    });

    describe('when replayed here with the same node, flags and UIDs (setpriv; paths under a temp root)', () => {
      let root: string;
      // The image's paths, moved under the temp root; node too (a copy of this one), so the other
      // UIDs reach it wherever the clone lies (a clone under a 0700 home is not traversable by them).
      const at = (p: string): string => join(root, p);
      const node = (): string => at('/nodejs/bin/node');
      const as = (uid: string, argv: string[], envs: Record<string, string>) => {
        const [u, g] = uid.split(':');
        return spawnSync('setpriv', [`--reuid=${u}`, `--regid=${g ?? u}`, '--clear-groups', 'env', '-i', ...Object.entries(envs).map(([k, v]) => `${k}=${v}`), ...argv], {
          encoding: 'utf8',
          timeout: 60_000,
        });
      };
      before(async () => {
        root = await mkdtemp(join(tmpdir(), 'sa-docker-cache-'));
        await chmod(root, 0o755);
        await mkdir(dirname(node()), { recursive: true, mode: 0o755 });
        await chmod(dirname(node()), 0o755);
        await chmod(dirname(dirname(node())), 0o755);
        await cp(await realpath(process.execPath), node());
        await chmod(node(), 0o755);
        // The build stage's output, as the code-cache stage's COPY --from=build lines bring it.
        const built = spawnSync('npm', ['run', 'build'], { cwd: REPO, encoding: 'utf8', timeout: 180_000 });
        assert.equal(built.status, 0, built.stderr);
        for (const [, src, dest] of stageCopies()) {
          await mkdir(dirname(at(dest!)), { recursive: true });
          await cp(join(REPO, src!.replace(/^\/src\//, '')), at(dest!));
          await chmod(dirname(at(dest!)), dest!.startsWith('/tmp/') ? 0o1777 : 0o755);
        }
      });
      after(async () => {
        if (root) await rm(root, { recursive: true, force: true });
      });

      it('the stage makes caches that the ENTRYPOINT and the init containers command, run as the image runs them, accept read-only', async () => {
        for (const run of warmRuns()) {
          const made = as(user(cacheStage!), run.map((a) => (a.startsWith('/') ? at(a) : a)), {});
          assert.equal(made.status, 0, made.stderr);
        }
        assert.equal((await readdir(at(cacheDir()))).filter((f) => f.endsWith('.bin')).length, warmRuns().length, 'one cache per command line');
        // COPY --from=code-cache --chown=<user>: then read-only, as with readOnlyRootFilesystem.
        const dest = at(args(cacheCopy()).at(-1)!);
        await cp(at(copySources(cacheCopy())[0]!), dest, { recursive: true });
        const [u, g] = flag(cacheCopy(), 'chown')!.split(':').map(Number);
        spawnSync('chown', ['-R', `${u}:${g}`, dest]);
        spawnSync('chmod', ['-R', 'a-w', dest]);
        const lines = [entrypoint(), ...(await exampleCommands()).map((c) => c.command)];
        for (const line of lines) {
          const argv = [node(), ...line.slice(1, -1), at(line.at(-1)!), 'version'];
          const r = as(user(finalStage), argv, { NODE_DEBUG: 'secrets_agent_code_cache' });
          assert.equal(r.status, 0, r.stderr);
          assert.match(r.stderr, /SECRETS_AGENT_CODE_CACHE \d+: \S+\/app\/code-cache\/\S+\.bin: accepted/, JSON.stringify(line));
        }
      });

      it('run under another UID (runAsUser), the image uses the same cache quietly: same output, nothing on stderr', () => {
        const ep = entrypoint();
        const argv = [node(), ...ep.slice(1, -1), at(ep.at(-1)!), 'version'];
        const r = as('12345:12345', argv, {});
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /^secrets-agent \d+\.\d+\.\d+ /);
        assert.equal(r.stderr, '');
        assert.match(as('12345:12345', argv, { NODE_DEBUG: 'secrets_agent_code_cache' }).stderr, /: accepted/);
      });
    });
  });

  describe('when only the files the build stage copies are present', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sa-docker-build-'));
    });
    after(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('its npm run build produces a bundle that runs', async () => {
      // Replay the build stage's COPY lines into an empty dir (WORKDIR). `npm ci`
      // cannot run here without the network, so its result, node_modules from the
      // same lockfile, is linked in: that is the one step not replayed.
      for (const c of keyword(buildStage, 'COPY') as Copy[]) {
        const dest = args(c).at(-1)!;
        for (const src of copySources(c)) {
          // Docker: a directory's contents go into dest; a file goes into dest/ or becomes dest.
          const isDir = (await stat(join(REPO, src))).isDirectory();
          const target = isDir || !dest.endsWith('/') ? join(dir, dest) : join(dir, dest, basename(src));
          await mkdir(join(target, '..'), { recursive: true });
          await cp(join(REPO, src), target, { recursive: true });
        }
      }
      await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir');
      const run = keyword(buildStage, 'RUN').at(-1)!.getArgumentsContent()!.split(' ');
      const built = spawnSync(run[0]!, run.slice(1), { cwd: dir, encoding: 'utf8', timeout: 120_000 });
      assert.equal(built.status, 0, built.stderr);
      const bundle = join(dir, 'dist', 'secrets-agent.mjs');
      assert.ok((await stat(bundle)).size > 100_000);
      const version = spawnSync(process.execPath, [bundle, 'version'], { cwd: tmpdir(), encoding: 'utf8' });
      assert.equal(version.status, 0, version.stderr);
      assert.match(version.stdout, /^secrets-agent \d+\.\d+\.\d+/);
      // Everything the later stages take from this one is there (the bundle, the warm-up, the third-party notices).
      const fromBuild = dockerfile.getInstructions().filter((i) => i.getKeyword() === 'COPY' && flag(i as Copy, 'from') === 'build').flatMap((c) => copySources(c as Copy));
      assert.ok(fromBuild.includes('/src/dist/THIRD-PARTY-NOTICES'), fromBuild.join(', '));
      for (const src of fromBuild) assert.ok(existsSync(join(dir, relative('/src', src))), `${src}: COPY --from=build takes it, but the build stage does not make it`);
    });
  });
});
