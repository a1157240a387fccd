// What the image runs, read from the Dockerfile (one source of truth for the
// tests and the bench).
import { readFile } from 'node:fs/promises';
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

/** The node flags of the init container in k8s-examples/init-container.yaml (its `command`, or the ENTRYPOINT's when it sets none). */
export async function initContainerFlags(): Promise<string[]> {
  const doc = parseAllDocuments(await readFile(join(REPO, 'k8s-examples', 'init-container.yaml'), 'utf8'))
    .map((d) => d.toJS() as { kind?: string; spec?: { template?: { spec?: { initContainers?: { name: string; command?: string[] }[] } } } })
    .find((d) => d.kind === 'Deployment');
  const c = doc?.spec?.template?.spec?.initContainers?.find((x) => x.name === 'secrets-agent');
  if (!c) throw new Error('k8s-examples/init-container.yaml: no Deployment with an initContainer named secrets-agent');
  return c.command ? c.command.slice(1, -1) : entrypointFlags();
}
