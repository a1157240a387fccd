// Every path inside the agent's image that the docs, the examples or the code
// name exists in the image the Dockerfile builds: the files its runtime stage
// copies (and, under a copied directory, the files copied there) and the node of
// its ENTRYPOINT. A doc that sends users to /app/templates/ while the image has
// them at /etc/secrets-agent/templates/ fails here.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { describe, it } from 'node:test';
import { DockerfileParser, type JSONInstruction } from 'dockerfile-ast';
import { REPO } from '../support/cli.ts';

/** The runtime stage's paths: files and directories (a directory ends with "/"). */
async function imagePaths(): Promise<Set<string>> {
  const df = DockerfileParser.parse(await readFile(join(REPO, 'Dockerfile'), 'utf8'));
  const froms = df.getFROMs();
  const runtimeStart = froms.at(-1)!.getRange().start.line;
  const paths = new Set<string>();
  const addDir = (dir: string): void => {
    for (let d = dir.replace(/\/*$/, '/'); d !== '/'; d = posix.dirname(d.slice(0, -1)).replace(/\/*$/, '/')) paths.add(d);
  };
  for (const copy of df.getCOPYs()) {
    if (copy.getRange().start.line < runtimeStart) continue;
    const args = copy.getArguments().map((a) => a.getValue()).filter((a) => !a.startsWith('--'));
    const dest = args.at(-1)!;
    const fromStage = copy.getFromFlag() !== null;
    for (const src of args.slice(0, -1)) {
      if (dest.endsWith('/')) {
        addDir(dest);
        // A glob of the build context: each file it matches lands in dest.
        const dir = posix.dirname(src);
        const re = new RegExp(`^${basename(src).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
        const names = fromStage ? [basename(src)] : (await readdir(join(REPO, dir))).filter((n) => re.test(n));
        assert.ok(names.length > 0, `COPY ${src} matches nothing`);
        for (const n of names) paths.add(dest + n);
      } else {
        addDir(posix.dirname(dest));
        paths.add(dest);
      }
    }
  }
  const ep = df.getENTRYPOINTs().at(-1) as JSONInstruction;
  const node = ep.getJSONStrings()[0]!.getJSONValue();
  paths.add(node);
  return paths;
}

/** Image paths named in a text: the agent's own directories, never an app's (/app/db.env is the app's). */
const IMAGE_PATH = /(?:\/app\/(?:templates|secrets-agent\.mjs|code-cache)|\/etc\/secrets-agent\/templates|\/nodejs\/)[\w./-]*/g;

async function* texts(): AsyncGenerator<[string, string]> {
  const roots = ['README.md', 'Dockerfile', 'docs', 'k8s-examples', 'agent', 'templates', 'examples'];
  const walk = async function* (rel: string): AsyncGenerator<[string, string]> {
    const entries = await readdir(join(REPO, rel), { withFileTypes: true }).catch(() => undefined);
    if (!entries) {
      yield [rel, await readFile(join(REPO, rel), 'utf8')];
      return;
    }
    for (const e of entries) yield* walk(join(rel, e.name));
  };
  for (const r of roots) yield* walk(r);
}

describe('paths in the image', () => {
  it('every image path the docs, examples and code name is one the Dockerfile puts there', async () => {
    const paths = await imagePaths();
    assert.ok(paths.has('/etc/secrets-agent/templates/dotenv.liquid'), 'the parser sees the templates');
    const inImage = (p: string): boolean => {
      const clean = p.replace(/[.,:;)]+$/, '');
      return paths.has(clean) || paths.has(clean.replace(/\/?$/, '/')) || paths.has(clean.replace(/\/$/, ''));
    };
    const wrong: string[] = [];
    for await (const [file, text] of texts()) {
      const lines = text.split('\n');
      lines.forEach((line, i) => {
        for (const m of line.matchAll(IMAGE_PATH)) if (!inImage(m[0])) wrong.push(`${file}:${i + 1}: ${m[0]}`);
      });
    }
    assert.deepEqual(wrong, [], `paths the image does not have (it has: ${[...paths].sort().join(' ')})`);
  });
});
