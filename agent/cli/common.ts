// What every command shares: the exit codes (the CLI's contract), the global
// options main() hands each command, and UsageError. (A ConfigError is reported
// by errors.ts's reportConfigError: the hot reload uses it too.)
// Imported by agent/cli/index.ts and each command; imports nothing of theirs.
import type { Logger } from '../observe/log.ts';

/** Exit codes: 0 ok; 1 a secret or file could not be produced; 2 usage or configuration error. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** What main() resolved from the flags and the environment, for every command. */
export interface GlobalOptions {
  configPath: string;
  log: Logger;
  logLevel: string;
  logFormat: 'json' | 'text';
  /** run: --listen HOST:PORT, in place of the config's server.listen. */
  listen?: string;
}

/** A wrong command line: main() prints `error: <message>` and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * The first line of a config the agent generates (convert eso, inject): where its JSON Schema is.
 * The project has no published URL for it, so the line names the file rather than invent one.
 */
export const SCHEMA_COMMENT = '# JSON Schema: schema/config.schema.json in the secrets-agent source (point an editor at it: # yaml-language-server: $schema=PATH)';
