// The shapes that cross module boundaries. Each module owns its own internals;
// what one folder hands to another is declared here, once, with the one rule
// on them that two folders share (sameSource: refresh/scheduler.ts and
// refresh/runner.ts).

/**
 * Where a spec's value lives: a Secrets Manager secret, one SSM parameter, or
 * every SSM parameter under a path (recursively).
 */
export type SecretKind = 'secret' | 'parameter' | 'parameterPath';

/** A secret as configured: a local name and where it comes from. */
export interface SecretSpec {
  /** Local name, the key under `secrets:` (used in templates, logs and metric labels). */
  readonly name: string;
  /** The backend; absent means 'secret' (Secrets Manager). */
  readonly kind?: SecretKind;
  /** Secret name or full ARN; parameter name or full ARN; or the parameter path ('/prod/app/'). */
  readonly id: string;
  /** Secrets Manager: staging label to read; default AWSCURRENT. Absent when `versionId` is set, and for parameters. */
  readonly versionStage?: string;
  /**
   * Pinned version: fetched once, never refreshed. Secrets Manager: the version id;
   * a parameter: its version number, in decimal ("3").
   */
  readonly versionId?: string;
  /** A parameter's label (the version the label points at now); never with `versionId`. */
  readonly label?: string;
  /** Per-secret override of refresh.intervalMs. */
  readonly refreshIntervalMs?: number;
  // --- fetch once (refreshInterval: never) ---
  /**
   * `refreshInterval: never`: fetched at start (and on a config reload that
   * changes it), never re-checked (External Secrets Operator's refreshInterval 0).
   */
  readonly fetchOnce?: true;
  // --- end fetch once ---
}

/** A spec's backend (specs made before parameters existed say nothing: Secrets Manager). */
export function kindOf(spec: SecretSpec): SecretKind {
  return spec.kind ?? 'secret';
}

/**
 * Whether two specs read the same value (same backend, same secret or parameter
 * or path, same stage or label, same pinned version), so a value held for one is
 * the value of the other: a config reload carries it over, and the scheduler
 * keeps the secret's schedule. The local name and the refresh interval do not matter.
 */
export function sameSource(a: SecretSpec, b: SecretSpec): boolean {
  return (
    kindOf(a) === kindOf(b) && a.id === b.id && a.versionStage === b.versionStage && a.versionId === b.versionId && a.label === b.label
  );
}

export interface FileSpecBase {
  /** Relative to outputDir, already validated as safe; with targets, it starts with its target ("db-creds/DB_PASSWORD"). */
  readonly path: string;
  /** Numeric mode, default 0o400. */
  readonly mode: number;
  readonly uid?: number;
  readonly gid?: number;
}
/**
 * How the bytes of a `secret` or `eachKey` file are decoded before they are
 * written (External Secrets Operator's decodingStrategy, same rules):
 * `base64` (standard alphabet, padded; CR and LF ignored), `base64url` (URL
 * alphabet, padded), `auto` (base64, else base64url, else as they are),
 * `none` (as they are; the default).
 */
export type Decoding = 'none' | 'base64' | 'base64url' | 'auto';

/**
 * One output file; exactly one of the three content sources.
 * A template may name a `secret`: it is then also available as `secret` (parsed),
 * `raw_secret` and `meta_secret` in the template context, so ready-made templates
 * (templates/*.liquid) work with any local name.
 */
export type FileSpec =
  | (FileSpecBase & { readonly kind: 'template'; readonly template: string; readonly secret?: string })
  | (FileSpecBase & { readonly kind: 'templateFile'; /** absolute */ readonly templateFile: string; readonly secret?: string })
  | (FileSpecBase & { readonly kind: 'secret'; readonly secret: string; readonly key?: string; readonly decode?: Decoding })
  /**
   * `dir:` + `eachKey: true`: one file `<path>/<key>` per top-level key of the
   * secret's JSON object (of the value at `key`, when given), following keys
   * as they are added or removed. `path` is the directory ("." = outputDir itself).
   * Files under `path` that another entry writes explicitly win over a key of
   * the same name; between two eachKey entries, the later one wins.
   */
  | (FileSpecBase & { readonly kind: 'eachKey'; readonly secret: string; readonly key?: string; readonly decode?: Decoding })
  /**
   * `envFile: <dir>`: an env file for Kubernetes `fileKeyRef` (render/envfile.ts):
   * one line per file written directly in `dir` ("." = outputDir), its name
   * as key and its bytes as value, in the kubelet's `syntax`.
   */
  | (FileSpecBase & { readonly kind: 'envFile'; readonly dir: string; readonly syntax: 'quoted' | 'plain'; readonly secret?: undefined });

interface NotifyBase {
  /** Label used in logs and metrics; unique. Derived from the target when not configured. */
  readonly name: string;
  /** Only notify when one of these file paths changed; undefined = any change. */
  readonly files?: readonly string[];
  /** Random delay 0..splayMs before notifying. */
  readonly splayMs: number;
}
export type NotifyTarget =
  | (NotifyBase & { readonly kind: 'signal'; readonly signal: NodeJS.Signals; readonly process?: string; readonly pidFile?: string })
  | (NotifyBase & { readonly kind: 'exec'; readonly argv: readonly string[]; readonly timeoutMs: number })
  | (NotifyBase & { readonly kind: 'http'; readonly url: string; readonly timeoutMs: number });

export type SourceConfig =
  | {
      readonly type: 'aws';
      readonly region?: string;
      /** A second region read when the primary fails transiently (source/index.ts, failover). */
      readonly failoverRegion?: string;
      readonly assumeRoleArn?: string;
      /** The default chain, instance metadata (the node's role) included, when the pod has no identity of its own. */
      readonly allowNodeRole?: boolean;
    }
  | { readonly type: 'file'; /** absolute (resolved against the config file's directory) */ readonly path: string };

/** The validated configuration, with defaults applied, durations in ms and paths resolved. */
export interface AgentConfig {
  /** Absolute path of the file it was loaded from (empty for the embedded default). */
  readonly configPath: string;
  readonly source: SourceConfig;
  /** Absolute. */
  readonly outputDir: string;
  readonly layout: 'generations' | 'files';
  /**
   * `targets:`: subdirectories of outputDir, each written as its own root
   * (output/targets.ts), in this order; every file's path starts with one.
   * Absent or empty: outputDir is the one root.
   */
  readonly targets?: readonly string[];
  readonly refresh: {
    readonly intervalMs: number;
    readonly jitter: number;
    readonly rotationAware: boolean;
    /** Secrets Manager: grouped checks through ListSecrets (source/aws.ts, describeMany). Set only when true. */
    readonly batchChecks?: boolean;
  };
  /** In declaration order. */
  readonly secrets: readonly SecretSpec[];
  readonly files: readonly FileSpec[];
  readonly notify: readonly NotifyTarget[];
  /** host:port, or '' for no server. */
  readonly server: { readonly listen: string };
  /**
   * Where a key path (e.g. `files[2]`, `files[2].template`, `secrets.db`) is
   * in the config file: 1-based line, or undefined (embedded config, unknown path).
   */
  readonly lineOf: (keyPath: string) => number | undefined;
}

/** One version of one secret's value, as fetched. */
export interface SecretValue {
  readonly arn: string;
  /** The secret's or parameter's name; a parameterPath: the path. */
  readonly name: string;
  /**
   * Secrets Manager: the version id. A parameter: its version number, in decimal.
   * A parameterPath: a digest of the (name, version) list of the parameters under
   * it, so a parameter added, removed or overwritten there is a new version.
   */
  readonly versionId: string;
  /** Secrets Manager staging labels; a parameter's labels where known (the configured label). */
  readonly versionStages: readonly string[];
  readonly createdDate?: Date;
  /** Exactly one of secretString / secretBinary is set (a parameterPath: the JSON object of its parameters' values). */
  readonly secretString?: string;
  readonly secretBinary?: Uint8Array;
  /** SSM parameters only. */
  readonly parameter?: ParameterInfo;
  /** The aws source: the AWS region that served this value (the failover region after a failover). */
  readonly region?: string;
}

/** What SSM says about a parameter (or, for a parameterPath, about each parameter under it). */
export interface ParameterInfo {
  /** Absent for a parameterPath (each entry has its own). */
  readonly type?: 'String' | 'StringList' | 'SecureString';
  readonly lastModifiedDate?: Date;
  /** A parameterPath: each parameter's value, keyed by its name relative to the path ('db/password'). */
  readonly entries?: ReadonlyMap<string, SecretValue>;
}

/** What a cheap check (DescribeSecret) tells us. */
export interface SecretMetadata {
  readonly arn: string;
  readonly name: string;
  /** The version id that currently carries the configured stage (undefined: no version has it). */
  readonly versionIdForStage?: string;
  readonly rotationEnabled: boolean;
  readonly nextRotationDate?: Date;
  /**
   * The secret is scheduled for deletion (DeleteSecret with a recovery window):
   * GetSecretValue now fails, the value in use is the last one the agent holds,
   * and the secret disappears for good unless someone runs RestoreSecret.
   */
  readonly deleted: boolean;
  /** DescribeSecret's DeletedDate, as Secrets Manager reports it (set when `deleted`). */
  readonly deletedDate?: Date;
}

/** One file ready to be written: bytes, mode, owner. */
export interface RenderedFile {
  readonly path: string;
  readonly content: Buffer;
  readonly mode: number;
  readonly uid?: number;
  readonly gid?: number;
}
