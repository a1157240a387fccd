// The file source: one generation reflects one version of the secrets file. A
// writer rewrites a file holding three secrets (all derived from one counter)
// every ~30 ms while the agent refreshes every 200 ms (jittered, so the three
// secrets fall due at different moments); every generation the agent writes,
// as seen on the volume and by the notify command, must hold one counter.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, type RunningAgent } from '../support/cli.ts';
import { stopAll } from '../support/procs.ts';
import { readOr, waitUntil } from '../support/wait.ts';

/** Rewrites the file atomically (temp file + rename, as kubelet and editors do) every ~30 ms. */
const WRITER = `
const fs = require('node:fs');
const [path] = process.argv.slice(1);
let n = 1;
const write = () => {
  n++;
  fs.writeFileSync(path + '.tmp', 'a: "a-' + n + '"\\nb: "b-' + n + '"\\nc: { v: "c-' + n + '" }\\n');
  fs.renameSync(path + '.tmp', path);
};
const t = setInterval(write, 30);
process.on('SIGTERM', () => { clearInterval(t); process.exit(0); });
`;

describe('run on the file source while the file changes every 30 ms', () => {
  let dir: string;
  let agent: RunningAgent | undefined;
  let writer: ReturnType<typeof spawn> | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-file-snapshot-'));
  });

  after(async () => {
    await stopAll([writer, agent]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('every generation holds the three secrets from one version of the file', async () => {
    const secrets = join(dir, 'secrets.yaml');
    await writeFile(secrets, 'a: "a-1"\nb: "b-1"\nc: { v: "c-1" }\n');
    const seen = join(dir, 'seen');
    await writeFile(
      join(dir, 'config.yaml'),
      `source: { type: file, path: secrets.yaml }
outputDir: out
refresh: { interval: 200ms, jitter: 0.5 }
secrets:
  a: { id: a }
  b: { id: b }
  c: { id: c }
files:
  - path: all
    template: "{{ secrets.a }} {{ secrets.b }} {{ secrets.c.v }}"
notify:
  - exec: ["/bin/sh", "-c", "cat \\"$SECRETS_AGENT_OUTPUT_DIR/all\\" >> ${seen}; echo >> ${seen}"]
server: { listen: "" }
`,
    );
    agent = startAgent(['run', '--config', join(dir, 'config.yaml')]);
    await agent.waitFor(/first render complete/);
    writer = spawn(process.execPath, ['-e', WRITER, secrets], { stdio: 'ignore' });

    // Every content the volume shows while the file changes under the agent.
    const observed = new Set<string>();
    const mixed = (s: string) => {
      const m = /^a-(\d+) b-(\d+) c-(\d+)$/.exec(s);
      return !m || m[1] !== m[2] || m[2] !== m[3];
    };
    await waitUntil(
      '12 generations',
      async () => {
        const content = await readOr(join(dir, 'out', 'all'));
        if (content) observed.add(content);
        return observed.size >= 12;
      },
      60_000,
      5,
    );
    const byNotify = (await readFile(seen, 'utf8')).split('\n').filter(Boolean);
    assert.ok(byNotify.length > 0, 'the notify command saw generations');
    const bad = [...observed, ...byNotify].filter(mixed);
    assert.deepEqual(bad, [], `generations mixing two versions of the file (of ${observed.size} seen on the volume, ${byNotify.length} by notify)`);
  });
});
