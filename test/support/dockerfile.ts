// What the image and the k8s examples run, read from the Dockerfile and the
// example manifests (one source of truth for the tests and the bench).
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DockerfileParser, type JSONInstruction } from 'dockerfile-ast';
import { parseAllDocuments } from 'yaml';
import { REPO } from './cli.ts';

/** The node flags of the Dockerfile's ENTRYPOINT (between /nodejs/bin/node and the script). */
export async function entrypointFlags(): Promise<string[]> {
  const df = DockerfileParser.parse(await readFile(join(REPO, 'Dockerfile'), 'utf8'));
  const ep = df.getENTRYPOINTs().at(-1) as JSONInstruction;
  return ep.getJSONStrings().map((s) => s.getJSONValue()).slice(1, -1);
}

export interface ExampleAgentContainer {
  /** Path under k8s-examples/. */
  file: string;
  name: string;
  /** Listed under initContainers (a plain init container or a native sidecar). */
  init: boolean;
  /** Its `command`, when it overrides the image's ENTRYPOINT. */
  command?: string[];
  /** Its `args` (the agent's command and flags), when set. */
  args?: string[];
}

/** Every container running the agent image in the YAML files under k8s-examples/, wherever it is nested (Pod, Deployment, CronJob ...). */
export async function exampleAgentContainers(): Promise<ExampleAgentContainer[]> {
  const out: ExampleAgentContainer[] = [];
  const dir = join(REPO, 'k8s-examples');
  const walk = (file: string, node: unknown, init: boolean): void => {
    if (Array.isArray(node)) {
      for (const x of node) walk(file, x, init);
    } else if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (typeof o.image === 'string' && /secrets-agent/.test(o.image)) {
        out.push({
          file,
          name: String(o.name),
          init,
          ...(Array.isArray(o.command) ? { command: o.command as string[] } : {}),
          ...(Array.isArray(o.args) ? { args: o.args as string[] } : {}),
        });
      }
      for (const [k, v] of Object.entries(o)) walk(file, v, k === 'initContainers' ? true : k === 'containers' ? false : init);
    }
  };
  for (const file of (await readdir(dir, { recursive: true })).filter((x) => /\.ya?ml$/.test(x))) {
    for (const doc of parseAllDocuments(await readFile(join(dir, file), 'utf8'))) walk(file, doc.toJS(), false);
  }
  return out;
}

/** The node flags of the init container in k8s-examples/init-container.yaml (its `command`, or the ENTRYPOINT's when it sets none). */
export async function initContainerFlags(): Promise<string[]> {
  const c = (await exampleAgentContainers()).find((x) => x.file === 'init-container.yaml' && x.init && x.name === 'secrets-agent');
  if (!c) throw new Error('k8s-examples/init-container.yaml: no initContainer named secrets-agent');
  return c.command ? c.command.slice(1, -1) : entrypointFlags();
}

/** The Dockerfile's base-image build arguments (the ARGs before its first FROM) and their defaults: the pinned images. */
export function baseImageArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const ins of DockerfileParser.parse(text).getInstructions()) {
    if (ins.getKeyword() === 'FROM') break;
    const m = /^ARG\s+(\w+)=(\S+)\s*$/.exec(ins.getTextContent().trim());
    if (ins.getKeyword() === 'ARG' && m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** The Dockerfile's text with each `FROM ${ARG}` replaced by that ARG's default, or by `overrides` (what `--build-arg` does). */
export function withBaseImages(text: string, overrides: Record<string, string> = {}): string {
  const values = { ...baseImageArgs(text), ...overrides };
  return text.replace(/^(FROM\s+)\$\{(\w+)\}/gm, (all, from: string, name: string) => (values[name] ? `${from}${values[name]}` : all));
}
