// Case 9 (npm run bench -- --only=validate; alone: node test/bench/validate.ts [sizes]): `validate` at scale. Configs of 10, 1,000 and 50,000 files (every
// other one a template, the rest raw secrets, 1,000 secrets shared, a few
// files in subdirectories and one notify `files:` filter), each validated by
// the real CLI from source; wall time and peak RSS (/usr/bin/time). The time
// and memory per file must stay flat: the checks across files (distinct paths,
// a file where another needs a directory) are indexed, not pairwise.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, round } from './lib.ts';

export interface ValidateRow {
  files: number;
  seconds: number;
  peakMB: number;
  msPerFile: number;
  exit: number | null;
}

export interface ValidateResult {
  rows: ValidateRow[];
  /** ms per file at the largest size / at 1,000 files (1 = linear). */
  growth: number;
}

async function config(dir: string, files: number): Promise<string> {
  const secrets = Math.min(1000, files);
  const lines = ['source: { type: file, path: secrets.yaml }', 'outputDir: out', 'secrets:'];
  for (let i = 0; i < secrets; i++) lines.push(`  s${i}: { id: app/s${i} }`);
  lines.push('files:');
  for (let i = 0; i < files; i++) {
    const path = i % 10 === 0 ? `d${i % 97}/f${i}.env` : `f${i}.txt`;
    if (i % 2 === 0) lines.push(`  - path: ${path}`, `    template: "U={{ secrets.s${i % secrets}.user }}"`);
    else lines.push(`  - path: ${path}`, `    secret: s${i % secrets}`);
  }
  lines.push('notify:', '  - exec: ["/bin/true"]', '    files: [f1.txt]');
  const file = join(dir, `config-${files}.yaml`);
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

export async function validateCase(sizes: readonly number[] = [10, 1000, 50_000]): Promise<ValidateResult> {
  const dir = await mkdtemp(join(tmpdir(), 'sa-bench-validate-'));
  const rows: ValidateRow[] = [];
  try {
    await writeFile(join(dir, 'secrets.yaml'), '{}\n');
    for (const n of sizes) {
      const file = await config(dir, n);
      const r = spawnSync('/usr/bin/time', ['-f', '%e %M', process.execPath, join(REPO, 'agent/main.ts'), 'validate', '--config', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
      const last = r.stderr.trim().split('\n').at(-1) ?? '';
      const [secs, kb] = last.split(' ').map(Number) as [number, number];
      rows.push({ files: n, seconds: secs, peakMB: round(kb / 1024, 1), msPerFile: round((secs * 1000) / n, 3), exit: r.status });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const at = (n: number) => rows.find((r) => r.files === n);
  const big = rows.at(-1);
  const mid = at(1000);
  return { rows, growth: big && mid ? round(big.msPerFile / mid.msPerFile, 2) : NaN };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  const r = await validateCase(sizes.length > 0 ? sizes : undefined);
  process.stdout.write('| files | exit | seconds | peak RSS MB | ms per file |\n|---:|---:|---:|---:|---:|\n');
  for (const x of r.rows) process.stdout.write(`| ${x.files} | ${x.exit} | ${x.seconds} | ${x.peakMB} | ${x.msPerFile} |\n`);
  process.stdout.write(`ms per file at the largest size / at 1,000 files: ${r.growth} (1 = linear)\n`);
}
