// The third-party notices that ship with the bundle (scripts/build.ts,
// thirdPartyNotices): every package whose code is inside secrets-agent.mjs is
// listed with its version and license, and its LICENSE/NOTICE texts are
// reproduced. The list of bundled packages is taken here from the bundle's
// source map (every source file that put code into the output), not from the
// metafile the build uses, so a build that forgot a package fails.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NOTICES_NAME, buildBundle, packageDirOf } from '../../scripts/build.ts';

describe(`the third-party notices (dist/${NOTICES_NAME})`, () => {
  let dir: string;
  let notices: string;
  /** name@version -> package directory, of every package the source map names. */
  const bundled = new Map<string, { dir: string; license: unknown }>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sa-notices-'));
    const outfile = join(dir, 'secrets-agent.mjs');
    await buildBundle(outfile);
    notices = await readFile(join(dir, NOTICES_NAME), 'utf8');
    const map = JSON.parse(await readFile(`${outfile}.map`, 'utf8')) as { sources: string[] };
    for (const source of map.sources) {
      const pkgDir = packageDirOf(source);
      if (!pkgDir) continue;
      const abs = resolve(dirname(outfile), pkgDir);
      const pkg = JSON.parse(await readFile(join(abs, 'package.json'), 'utf8')) as { name: string; version: string; license?: unknown };
      bundled.set(`${pkg.name}@${pkg.version}`, { dir: abs, license: pkg.license });
    }
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the build writes it next to the bundle, and the bundle holds third-party code (the check below is not empty)', () => {
    assert.ok(existsSync(join(dir, NOTICES_NAME)));
    assert.ok(bundled.size >= 20, `only ${bundled.size} packages in the source map`);
    for (const expected of ['@aws-sdk/client-secrets-manager', 'liquidjs', 'pino', 'yaml', 'zod']) {
      assert.ok([...bundled.keys()].some((id) => id.startsWith(`${expected}@`)), `${expected} is bundled`);
    }
  });

  it('lists every package the bundle holds, with its version and declared license, and nothing else', () => {
    const listed = [...notices.matchAll(/^- (\S+@[^:\s]+): /gm)].map((m) => m[1]!).sort();
    assert.deepEqual(listed, [...bundled.keys()].sort());
    for (const [id, { license }] of bundled) {
      assert.match(notices, new RegExp(`^- ${id.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: ${String(license).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`, 'm'), `${id}: its license ${String(license)}`);
    }
  });

  it("reproduces each package's LICENSE and NOTICE files, naming the package above its text", async () => {
    let texts = 0;
    for (const [id, { dir: pkgDir }] of bundled) {
      for (const file of (await readdir(pkgDir)).filter((f) => /^(?:licen[cs]e|copying|notice)(?:[.-].*)?$/i.test(f))) {
        const text = (await readFile(join(pkgDir, file), 'utf8')).trim();
        // Blocks: a rule, the owners' lines ending with ':', a blank line, the text.
        const block = notices.split(`${'-'.repeat(78)}\n`).find((b) => b.split('\n\n')[0]!.split('\n').some((l) => l.replace(/:$/, '') === `${id} (${file})`));
        assert.ok(block, `${id}: ${NOTICES_NAME} has no block for its ${file}`);
        assert.equal(block.slice(block.indexOf('\n\n') + 2).trim(), text, `${id}: the block for its ${file} does not hold that file's text`);
        texts++;
      }
    }
    assert.ok(texts >= bundled.size - 5, `only ${texts} license files for ${bundled.size} packages`);
  });
});
