// Writes schema/config.schema.json from the zod schema (agent/config/schema.ts).
// Editors use it through `# yaml-language-server: $schema=...`.
// test/unit/config/config.test.ts fails when the committed file is out of date: run `npm run schema`.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { buildJsonSchema } from '../agent/config/index.ts';

export const SCHEMA_FILE = fileURLToPath(new URL('../schema/config.schema.json', import.meta.url));

export function renderJsonSchema(): string {
  return `${JSON.stringify(buildJsonSchema(), null, 2)}\n`;
}

if (import.meta.main) {
  await writeFile(SCHEMA_FILE, renderJsonSchema());
  console.log(`wrote ${SCHEMA_FILE}`);
}
