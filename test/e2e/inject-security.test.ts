// `inject` (the real CLI) and Pod Security "restricted": the container it adds
// passes the profile by itself, whatever the pod's own securityContext says, and
// the files it will write are readable by the app's user. The profile's checks
// are test/support/pod-security.ts (written from Pod Security admission's
// source: no API server here). Readability is shown with real processes: the
// real `init` (file source) runs as the user, groups and mode the injected
// manifest gives it (setpriv), and the app's user reads the files; the kubelet's
// part (an emptyDir setgid to the pod's fsGroup) is done by hand.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { runAgent, type RunResult } from '../support/cli.ts';
import { reachable } from '../support/reachable.ts';
import { restrictedViolations } from '../support/pod-security.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const FIX = 'test/fixtures/inject/restricted.yaml';
const ESO = ['--from-eso', 'examples/eso/secretstore.yaml', '--from-eso', 'examples/eso/externalsecret.yaml'];
const CANARY = 'CANARY-inject-security-7f3a01';

const docsOf = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj);
const podOf = (o: Obj): { spec: Obj; metadata: Obj } => {
  if (o.kind === 'Pod') return { spec: o.spec, metadata: o.metadata };
  const template = o.kind === 'CronJob' ? o.spec.jobTemplate.spec.template : o.spec.template;
  return { spec: template.spec, metadata: template.metadata ?? {} };
};
const agentOf = (o: Obj): Obj => (podOf(o).spec.initContainers as Obj[]).find((c) => c.name === 'secrets-agent')!;
const byName = (out: Obj[], name: string): Obj => out.find((o) => o.metadata?.name === name && o.kind !== 'ConfigMap')!;

/** Run as another user (uid, gid, supplementary groups), nothing else inherited but PATH. */
function as(uid: number, groups: readonly number[], argv: readonly string[], cwd: string) {
  return spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups', 'env', '-i', `PATH=${process.env['PATH'] ?? ''}`, ...argv], {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('inject and Pod Security "restricted"', () => {
  let dir: string;
  let withConfig: RunResult;
  let withEso: RunResult;
  const config = (mode: string) => `source: { type: file, path: secrets.yaml }
outputDir: /run/secrets/app
secrets:
  db: { id: prod/shop/db }
files:
  - path: db.env
    template: "PASSWORD={{ secrets.db.password }}"
    mode: "${mode}"
server: { listen: "0.0.0.0:9102" }
`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-inject-psa-'));
    await chmod(dir, 0o755);
    await writeFile(join(dir, 'config.yaml'), config('0400'));
    withConfig = await runAgent(['inject', '--config', join(dir, 'config.yaml'), FIX]);
    withEso = await runAgent(['inject', ...ESO, FIX]);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const [how, r] of [['--config', () => withConfig], ['--from-eso', () => withEso]] as const) {
    it(`${how}: every injected pod passes the restricted profile (the app's settings were enough before; the agent's container brings its own)`, () => {
      assert.ok(r().code === 0 || r().code === 1, r().stderr);
      const workloads = docsOf(r().stdout).filter((o) => o.kind !== 'ConfigMap');
      assert.equal(workloads.length, 2);
      for (const o of workloads) {
        const { spec, metadata } = podOf(o);
        assert.deepEqual(restrictedViolations(spec, metadata), [], `${o.kind} ${o.metadata.name}`);
      }
    });
  }

  it('the agent container alone satisfies every container rule, in a pod with no securityContext at all', async () => {
    const r = await runAgent(['inject', '--config', join(dir, 'config.yaml'), 'test/fixtures/inject/workloads.yaml']);
    for (const o of docsOf(r.stdout).filter((x) => x.kind !== 'ConfigMap' && x.kind !== 'Service')) {
      const agent = agentOf(o);
      const alone = restrictedViolations({ initContainers: [agent] });
      assert.deepEqual(alone, [], `${o.kind} ${o.metadata.name}`);
    }
  });

  it('--config and --from-eso give the agent the same securityContext: the app\'s user when the manifest states it, else the image\'s (65532)', () => {
    for (const name of ['api', 'report']) {
      assert.deepEqual(agentOf(byName(docsOf(withConfig.stdout), name)).securityContext, agentOf(byName(docsOf(withEso.stdout), name)).securityContext, name);
    }
    assert.equal(agentOf(byName(docsOf(withConfig.stdout), 'api')).securityContext.runAsUser, 1000);
    assert.equal(agentOf(byName(docsOf(withConfig.stdout), 'report')).securityContext.runAsUser, 65532);
  });

  it('a file the app could not read is named, with what to set (fsGroup without group read: mode 0440)', async () => {
    assert.match(withConfig.stderr, /restricted\.yaml:\d+: note: the files are group 3000 \(the pod's fsGroup\), but db\.env \(0400\) is not group-readable.*set mode: "0440"/);
    assert.doesNotMatch(withEso.stderr, /not group-readable|readable only by/, '--from-eso writes 0444');
    await writeFile(join(dir, 'config-0440.yaml'), config('0440'));
    const r = await runAgent(['inject', '--config', join(dir, 'config-0440.yaml'), FIX]);
    assert.doesNotMatch(r.stderr, /not group-readable|readable only by/);
    const open = await runAgent(['inject', '--config', join(dir, 'config-0440.yaml'), 'test/fixtures/inject/workloads.yaml']);
    assert.match(open.stderr, /workloads\.yaml:\d+: note: the manifest does not say which user the app runs as.*db\.env \(0440\) is readable only by that user and its group; set the pod's securityContext\.runAsUser to the app's UID/);
  });

  it('real processes: the agent runs as the injected user and groups, and the app\'s user reads every file', async () => {
    await writeFile(join(dir, 'secrets.yaml'), `prod/shop/db: { password: "${CANARY}" }\n`);
    // node and the agent copied where the other UIDs reach them, wherever the clone lies (test/support/reachable.ts).
    const place = await reachable();
    after(() => place.close());
    const agent = await place.agent();
    // api: the app is user 1000 and the agent runs as the user inject gave it, with the default mode 0400.
    const apiAgent = agentOf(byName(docsOf(withConfig.stdout), 'api')).securityContext;
    const apiOut = join(dir, 'api');
    await mkdir(apiOut);
    await chown(apiOut, apiAgent.runAsUser, apiAgent.runAsUser); // an emptyDir the agent can write (kubelet: 0777)
    await writeFile(join(dir, 'api.yaml'), config('0400').replace('/run/secrets/app', apiOut));
    const init = as(apiAgent.runAsUser, [], [place.node, agent, 'init', '--config', join(dir, 'api.yaml')], dir);
    assert.equal(init.status, 0, init.stderr);
    const read = as(1000, [], ['cat', join(apiOut, 'db.env')], dir);
    assert.equal(read.status, 0, `the app's user 1000 cannot read db.env: ${read.stderr}`);
    assert.equal(read.stdout, `PASSWORD=${CANARY}`);

    // report: fsGroup 3000; the kubelet makes the emptyDir group 3000, setgid, and gives every container group 3000.
    const reportAgent = agentOf(byName(docsOf(withConfig.stdout), 'report')).securityContext;
    const reportOut = join(dir, 'report');
    await mkdir(reportOut);
    await chown(reportOut, 0, 3000);
    await chmod(reportOut, 0o2775);
    await writeFile(join(dir, 'report.yaml'), config('0440').replace('/run/secrets/app', reportOut));
    const init2 = as(reportAgent.runAsUser, [3000], [place.node, agent, 'init', '--config', join(dir, 'report.yaml')], dir);
    assert.equal(init2.status, 0, init2.stderr);
    const read2 = as(1001, [3000], ['cat', join(reportOut, 'db.env')], dir);
    assert.equal(read2.status, 0, `an app user in group 3000 cannot read db.env: ${read2.stderr}`);
    assert.equal(read2.stdout, `PASSWORD=${CANARY}`);
    const outsider = as(1002, [], ['cat', join(reportOut, 'db.env')], dir);
    assert.notEqual(outsider.status, 0, 'a user outside the group cannot');
    assert.ok(!(init.stdout + init.stderr + init2.stdout + init2.stderr).includes(CANARY), 'no value in the logs');
    assert.ok(!(await readFile(join(dir, 'api.yaml'), 'utf8')).includes(CANARY));
  });
});
