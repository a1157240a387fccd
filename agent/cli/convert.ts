// `secrets-agent convert eso [--output-dir DIR] FILE...`: reads External
// Secrets Operator manifests ("-" = stdin), prints one agent config (YAML) on
// stdout and every diagnostic on stderr (file:line: message).
// Exit codes: 0 everything converted; 1 the config is usable but parts were
// not converted (each listed); 2 an input is unusable, or a usage error.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { SCHEMA_COMMENT } from './common.ts';
import { argumentError } from './help.ts';
import { convertEso, type EsoInput } from '../eso/convert.ts';

const USAGE = 'usage: secrets-agent convert eso [--output-dir DIR] FILE...   ("-" reads stdin)';
/** Where editors find the schema of the printed config. */

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function convert(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: { 'output-dir': { type: 'string' } } });
  } catch (err) {
    process.stderr.write(`error: ${argumentError(err as Error, 'convert')}\n`);
    return 2;
  }
  const [what, ...files] = parsed.positionals;
  if (what !== 'eso' || files.length === 0) {
    process.stderr.write(`error: ${what === 'eso' ? 'no input file given' : `cannot convert from "${what ?? ''}" (only "eso")`}\n${USAGE}\n`);
    return 2;
  }
  const inputs: EsoInput[] = [];
  for (const file of files) {
    try {
      inputs.push({ file, text: file === '-' ? await readStdin() : await readFile(file, 'utf8') });
    } catch (err) {
      process.stderr.write(`${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the path\n`);
      return 2;
    }
  }
  const outputDir = parsed.values['output-dir'];
  const { config, diagnostics } = convertEso(inputs, outputDir === undefined ? {} : { outputDir });
  for (const d of diagnostics) {
    const label = d.severity === 'note' ? 'note' : d.severity === 'fatal' ? 'error' : 'not converted';
    process.stderr.write(`${d.file}${d.line === undefined ? '' : `:${d.line}`}: ${label}: ${d.message}\n`);
  }
  if (!config) return 2;
  process.stdout.write(`${SCHEMA_COMMENT}\n# Converted by secrets-agent convert eso from: ${files.join(' ')}\n${stringify(config, { lineWidth: 0 })}`);
  return diagnostics.some((d) => d.severity === 'unconverted') ? 1 : 0;
}
