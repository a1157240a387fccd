// Every error a user can see. Messages say what failed, where, and how to fix
// it, and never carry a secret value. Always pass `{ cause }` so the original
// error survives for debug logs.
import type { Logger } from './observe/log.ts';

/** One problem in a configuration file. */
export interface ConfigIssue {
  /** Config file path as given by the user (or '<embedded>'). */
  readonly file: string;
  /** 1-based line, when known. */
  readonly line?: number;
  /** Key path like `files[2].mode`; '' for the whole document. */
  readonly path: string;
  readonly message: string;
}

export function formatConfigIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}`;
  return issue.path ? `${where}: ${issue.path}: ${issue.message}` : `${where}: ${issue.message}`;
}

/** One log record per problem, each a complete human sentence with file:line. */
export function reportConfigError(err: ConfigError, log: Logger): void {
  // No `key` for a problem of the whole file (a read failure): an empty field says nothing.
  for (const issue of err.issues) log.error({ file: issue.file, line: issue.line, ...(issue.path ? { key: issue.path } : {}) }, formatConfigIssue(issue));
}

/** Usage or configuration error: exit code 2. Holds every problem found, not only the first. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];
  /** The file could not be read at all (missing, a directory, no permission): a wrong command line more than a wrong config. */
  readonly unreadable: boolean;
  constructor(issues: readonly ConfigIssue[], options?: ErrorOptions & { unreadable?: boolean }) {
    super(issues.map(formatConfigIssue).join('\n'), options);
    this.issues = issues;
    this.unreadable = options?.unreadable ?? false;
  }
}

/** A secret could not be read from the source. */
export class SourceError extends Error {
  override readonly name = 'SourceError';
  /** Local name of the secret. */
  readonly secret: string;
  /** Configured id (name or ARN). */
  readonly secretId: string;
  /** AWS error code (e.g. ResourceNotFoundException) or a local code (ETIMEDOUT, InvalidSecretPayload). */
  readonly code: string;
  /** Retrying may help (throttling, 5xx, timeouts, network); terminal errors need an operator. */
  readonly transient: boolean;
  /** The message without the secret's name and id: the same text for every secret one cause fails (one log line per cause). */
  readonly detail: string;
  constructor(init: { secret: string; secretId: string; code: string; transient: boolean; message: string }, options?: ErrorOptions) {
    super(`secret "${init.secret}" (${init.secretId}): ${init.message}`, options);
    this.detail = init.message;
    this.secret = init.secret;
    this.secretId = init.secretId;
    this.code = init.code;
    this.transient = init.transient;
  }
}

/** Credentials could not be obtained (web identity, Pod Identity, assume-role). */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
  readonly transient: boolean;
  constructor(message: string, transient: boolean, options?: ErrorOptions) {
    super(message, options);
    this.transient = transient;
  }
}

/** A file could not be rendered (template error, missing key, bad payload). */
export class RenderError extends Error {
  override readonly name = 'RenderError';
  /** Output file path (relative to outputDir). */
  readonly file: string;
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(`file "${file}": ${message}`, options);
    this.file = file;
  }
}

/** The output volume could not be written (ENOSPC, EACCES, unsafe path, hostile symlink). */
export class WriteError extends Error {
  override readonly name = 'WriteError';
  readonly code: string;
  constructor(message: string, code: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/**
 * The configuration is valid but cannot work where the agent runs: the listen
 * port is taken, the listen host does not resolve, no AWS region is set. An
 * operator mistake, not a bug: exit 2 with this one message (what, where, how
 * to fix), no stack.
 */
export class SetupError extends Error {
  override readonly name = 'SetupError';
  /** The config key to fix, e.g. `server.listen`. */
  readonly key: string;
  /** The system error code, when there is one (EADDRINUSE, ENOTFOUND). */
  readonly code: string | undefined;
  constructor(key: string, message: string, code?: string, options?: ErrorOptions) {
    super(message, options);
    this.key = key;
    this.code = code;
  }
}
