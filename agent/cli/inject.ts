// `secrets-agent inject [--config FILE | --from-eso FILE...] [--image IMAGE] FILE...`:
// reads workload manifests ("-" = stdin) and prints them with the agent added
// (agent/inject/inject.ts), preceded by the agent's config as a ConfigMap.
// The config is a file (and the templates beside it that it names), or is
// converted from ESO manifests as `convert eso` does (with an env file per
// target, which env and envFrom of the ESO Secrets are rewritten to read:
// --env-syntax, --keys; --env-mode entrypoint for clusters without
// EnvFiles). Diagnostics on stderr
// (file:line: note|not converted|error: ...).
// Exit codes: 0 injected; 1 injected, but parts could not be carried over
// (each listed with what to do); 2 an input is unusable, or a usage error:
// nothing is printed on stdout.
import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse, stringify } from 'yaml';
import { convertEso, type Diagnostic, type EsoInput } from '../eso/convert.ts';
import { CONFIG_KEY, envFilePath, esoTargets, inject as injectManifests, type EsoTarget, type ManifestInput } from '../inject/inject.ts';
import { AGENT_PORT, IMAGE, OUTPUT_DIR } from '../deploy.ts';
import { SCHEMA_COMMENT } from './common.ts';
import { argumentError } from './help.ts';

const USAGE = 'usage: secrets-agent inject (--config FILE | --from-eso FILE... [--keys SECRET=KEY,...]... [--env-syntax quoted|plain] [--env-mode fileKeyRef|entrypoint] [--restart PROCESS]) [--image IMAGE] FILE...   ("-" reads stdin)';
const DEFAULT_IMAGE = IMAGE;
/** Where the agent mounts its volume when the config comes from ESO (the app keeps its own paths). */
const ESO_OUTPUT_DIR = OUTPUT_DIR;
/** With --from-eso: every file readable by the app's user, as ESO's Secret volumes are (defaultMode 0644), but read-only. */
const ESO_FILE_MODE = '0444';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

class Unusable extends Error {}

async function readInput(file: string, stdin: { used: boolean }): Promise<string> {
  if (file === '-') {
    if (stdin.used) throw new Unusable('-: stdin can be read once; give "-" one time only');
    stdin.used = true;
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new Unusable(`${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the path`);
  }
}

/** The port of server.listen ("" disables the server: undefined). */
function portOf(config: Obj): number | undefined {
  const server = isObj(config['server']) ? config['server'] : {};
  const listen = typeof server['listen'] === 'string' ? server['listen'] : `0.0.0.0:${AGENT_PORT}`;
  if (listen === '') return undefined;
  const port = Number(/:(\d+)$/.exec(listen)?.[1]);
  return Number.isInteger(port) && port > 0 ? port : AGENT_PORT;
}

/** Does the config have a `restart` notify target? */
function hasRestartNotify(config: Obj): boolean {
  return Array.isArray(config['notify']) && config['notify'].some((n) => isObj(n) && n['restart'] !== undefined);
}

/** The ConfigMap data for a config file: config.yaml, plus each template file beside it that it names. */
async function fromConfigFile(file: string): Promise<{ data: Record<string, string>; config: Obj }> {
  const text = await readInput(file, { used: false });
  let config: unknown;
  try {
    config = parse(text);
  } catch (err) {
    const line = (err as { linePos?: Array<{ line: number }> }).linePos?.[0]?.line;
    throw new Unusable(`${file}${line === undefined ? '' : `:${line}`}: error: YAML syntax error reading the agent config: ${(err as Error).message.split('\n')[0]}; fix it (secrets-agent validate --config ${file} lists every problem)`);
  }
  if (!isObj(config) || typeof config['outputDir'] !== 'string') {
    throw new Unusable(`${file}: error: not an agent config (no outputDir) reading --config; give the agent's config.yaml (secrets-agent validate --config ${file} checks it)`);
  }
  const data: Record<string, string> = { [CONFIG_KEY]: text };
  const files = Array.isArray(config['files']) ? config['files'] : [];
  for (const [i, f] of files.entries()) {
    const t = isObj(f) && typeof f['templateFile'] === 'string' ? f['templateFile'] : undefined;
    // Absolute paths and ../templates/ (the image's templates) are in the image already.
    if (t === undefined || isAbsolute(t) || t.startsWith('../templates/')) continue;
    if (t.includes('/') || t === CONFIG_KEY) {
      throw new Unusable(`${file}: error: files[${i}].templateFile "${t}" is not a file beside the config, so it cannot be a key of the config's ConfigMap; put the template beside the config and name it by its file name`);
    }
    data[t] = await readInput(join(dirname(file), t), { used: false });
  }
  return { data, config };
}

export async function inject(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        'from-eso': { type: 'string', multiple: true },
        image: { type: 'string' },
        keys: { type: 'string', multiple: true },
        'env-syntax': { type: 'string' },
        'env-mode': { type: 'string' },
        restart: { type: 'string' },
      },
    });
  } catch (err) {
    process.stderr.write(`error: ${argumentError(err as Error, 'inject')}\n`);
    return 2;
  }
  const { values, positionals: files } = parsed;
  const eso = values['from-eso'] ?? [];
  if ((values.config === undefined) === (eso.length === 0) || files.length === 0) {
    process.stderr.write(`error: ${files.length === 0 ? 'no manifest given' : 'give either --config FILE or --from-eso FILE...'}\n${USAGE}\n`);
    return 2;
  }
  const given = new Map<string, string[]>();
  for (const k of values.keys ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(k);
    if (!m) {
      process.stderr.write(`error: --keys ${k}: give the Secret's name and its keys, e.g. --keys db-credentials=DB_USER,DB_PASSWORD\n${USAGE}\n`);
      return 2;
    }
    given.set(m[1]!, m[2]!.split(',').filter(Boolean));
  }
  const envSyntax = values['env-syntax'] as 'quoted' | 'plain' | undefined;
  if (envSyntax !== undefined && envSyntax !== 'quoted' && envSyntax !== 'plain') {
    process.stderr.write(`error: --env-syntax ${String(values['env-syntax'])}: use "quoted" (Kubernetes 1.35 and later, the default) or "plain" (1.34 with the EnvFiles gate on)\n${USAGE}\n`);
    return 2;
  }
  const envMode = values['env-mode'];
  if (envMode !== undefined && envMode !== 'fileKeyRef' && envMode !== 'entrypoint') {
    process.stderr.write(`error: --env-mode ${envMode}: use "fileKeyRef" (Kubernetes EnvFiles, the default) or "entrypoint" (clusters without it)\n${USAGE}\n`);
    return 2;
  }
  if ((given.size > 0 || envSyntax !== undefined || envMode !== undefined) && eso.length === 0) {
    process.stderr.write(`error: --keys, --env-syntax and --env-mode go with --from-eso\n${USAGE}\n`);
    return 2;
  }
  // --restart: the converted config gets a restart notify target, so rotations reach env vars (docs/notify.md).
  const restart = values.restart;
  if (restart !== undefined && (eso.length === 0 || restart === '')) {
    process.stderr.write(`error: ${restart === '' ? '--restart needs the app container\'s main process (a name or an absolute path)' : '--restart goes with --from-eso; with --config, add the restart target to the config (notify: [{restart: {process: ...}}])'}\n${USAGE}\n`);
    return 2;
  }
  const diagnostics: Diagnostic[] = [];
  const report = (): void => {
    for (const d of diagnostics) {
      const label = d.severity === 'note' ? 'note' : d.severity === 'fatal' ? 'error' : 'not converted';
      process.stderr.write(`${d.file}${d.line === undefined ? '' : `:${d.line}`}: ${label}: ${d.message}\n`);
    }
  };
  try {
    const stdin = { used: false };
    let data: Record<string, string>;
    let config: Obj;
    let targets: EsoTarget[] | undefined;
    if (values.config !== undefined) {
      ({ data, config } = await fromConfigFile(values.config));
    } else {
      const inputs: EsoInput[] = [];
      for (const file of eso) inputs.push({ file, text: await readInput(file, stdin) });
      // The env files only where the kubelet reads them (fileKeyRef): the entrypoint reads the key files.
      const envFiles = envMode === 'entrypoint' ? {} : { envFiles: { path: envFilePath, ...(envSyntax === undefined ? {} : { envSyntax }) } };
      const conversion = convertEso(inputs, { outputDir: ESO_OUTPUT_DIR, ...envFiles });
      diagnostics.push(...conversion.diagnostics);
      if (!conversion.config) {
        report();
        return 2;
      }
      config = { ...conversion.config, server: { listen: `0.0.0.0:${AGENT_PORT}` }, ...(restart === undefined ? {} : { notify: [{ restart: { process: restart } }] }) };
      config['files'] = (config['files'] as Obj[]).map((f) => ('mode' in f ? f : { ...f, mode: ESO_FILE_MODE }));
      data = { [CONFIG_KEY]: `${SCHEMA_COMMENT}\n# Converted by secrets-agent inject --from-eso from: ${eso.map((f) => basename(f)).join(' ')}\n${stringify(config, { lineWidth: 0 })}` };
      targets = esoTargets(inputs.map((i) => i.text)).map((t) => (given.has(t.name) ? { ...t, keys: given.get(t.name)! } : t));
      const unknown = [...given.keys()].filter((k) => !targets!.some((t) => t.name === k));
      if (unknown.length > 0) throw new Unusable(`--keys ${unknown.join(', ')}: no ExternalSecret writes a Secret of that name (the targets are ${targets.map((t) => t.name).join(', ')})`);
    }
    const manifests: ManifestInput[] = [];
    for (const file of files) manifests.push({ file, text: await readInput(file, stdin) });
    const port = portOf(config);
    // Each file's mode as the agent writes it (default 0400), for the app's read access (inject.ts, readable).
    const fileModes = (Array.isArray(config['files']) ? config['files'] : []).filter(isObj).map((f) => ({
      path: typeof f['path'] === 'string' ? f['path'] : typeof f['dir'] === 'string' ? f['dir'] : '',
      mode: typeof f['mode'] === 'string' ? f['mode'] : '0400',
    }));
    const result = injectManifests(manifests, {
      image: values.image ?? DEFAULT_IMAGE,
      configData: data,
      outputDir: config['outputDir'] as string,
      ...(port === undefined ? {} : { port }),
      ...(targets ? { targets } : {}),
      ...(envMode === undefined ? {} : { envMode }),
      files: fileModes,
      ...(hasRestartNotify(config) ? { restart: true } : {}),
    });
    diagnostics.push(...result.diagnostics);
    if (values.image === undefined && result.output !== undefined) {
      diagnostics.push({ severity: 'note', file: files[0]!, message: `no --image: the agent's image is this version's released image, ${DEFAULT_IMAGE}; give --image for a copy in your registry or your own build (docs/install.md)` });
    }
    report();
    if (result.output === undefined) return 2;
    process.stdout.write(result.output);
    return diagnostics.some((d) => d.severity === 'unconverted') ? 1 : 0;
  } catch (err) {
    if (!(err instanceof Unusable)) throw err;
    report();
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
}
