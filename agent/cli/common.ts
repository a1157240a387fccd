// What every command shares: the exit codes (the CLI's contract), the global
// options main() hands each command, and the one way a ConfigError is reported.
// Imported by agent/cli/index.ts and each command; imports nothing of theirs.
import { formatConfigIssue, type ConfigError } from '../errors.ts';
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
}

/** A wrong command line: main() prints `error: <message>` and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** One log record per problem, each a complete human sentence with file:line. */
export function reportConfigError(err: ConfigError, log: Logger): void {
  for (const issue of err.issues) log.error({ file: issue.file, line: issue.line, key: issue.path }, formatConfigIssue(issue));
}
