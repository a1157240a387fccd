// The configuration schema (zod 4). One source for three things: validation,
// the defaults, and schema/config.schema.json for editors. Rules that relate
// several keys (one content source per file, references to declared secrets
// and files, unique paths and names) live in rules.ts: zod skips an object's
// refinements once any of its fields is invalid, and we want every problem
// reported at once. The JSON Schema gets the same rules as plain JSON Schema
// keywords through `.meta()` so editors flag them too.
//
// The pieces it is built from: fields.ts (type messages, non-empty strings,
// durations, refreshInterval), names.ts (SSM parameter names, paths, labels),
// values.ts (file modes, paths, signals, URLs, listen addresses).
import * as z from 'zod';
import { checked, parameterLabelReason, parameterNameReason, parameterPathReason, PARAMETER_LABEL_JSON, PARAMETER_NAME_JSON, PARAMETER_NAME_MAX, PARAMETER_PATH_JSON, PARAMETER_PATH_MAX } from './names.ts';
import { duration, refreshIntervalSchema, text, typeError } from './fields.ts';
import { show } from './messages.ts';
import { crossCheck } from './rules.ts';
import { httpUrlReason, LISTEN_PATTERN, listenReason, modeMessage, NAME_MAX, normalizeSignal, PATH_SEGMENT, unsafePathReason } from './values.ts';

// A config is parsed once per start or reload. zod's JIT (a parser generated
// with `new Function` per object schema, compiled on its first use) costs more
// than it saves for one parse: loading a 10-secret config takes ~5 ms less at
// start-up and 2-3x less on a reload without it. Same results either way.
z.config({ jitless: true });

export const SECRET_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_-]{0,62}$';
export const FILE_PATH_PATTERN = `^${PATH_SEGMENT}(?:/${PATH_SEGMENT})*$`;
const MODE_PATTERN = '^0?[4-7][0-7]{2}$';
const SIGNAL_PATTERN = '^(?:[Ss][Ii][Gg])?[A-Za-z0-9]+$';
// No "@" before the path: fetch refuses a URL with a user name or password.
const URL_PATTERN = '^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#@\\\\]+(?:[/?#\\\\]\\S*)?$';
const ROLE_ARN_PATTERN = '^arn:aws[-a-z]*:iam::\\d{12}:role/.+$';
const REGION_PATTERN = '^[a-z]{2}(?:-[a-z]+)+-\\d+$';
const UID_MAX = 4_294_967_294;

// --- the schema -------------------------------------------------------------------

const sourceSchema = z
  .strictObject(
    {
      type: z
        .enum(['aws', 'file'], { error: (iss) => `${show(iss.input)} is not a source type (use "aws" or "file")` })
        .default('aws')
        .describe('Where secrets come from: "aws" (Secrets Manager and SSM Parameter Store) or "file" (a local YAML/JSON file of Secrets Manager ids, for development).'),
      region: z
        .string({ error: typeError('a string') })
        .regex(new RegExp(REGION_PATTERN), { error: (iss) => `${show(iss.input)} is not an AWS region (e.g. "us-east-1")` })
        .optional()
        .describe('AWS region (type aws). Default: AWS_REGION / AWS_DEFAULT_REGION.'),
      failoverRegion: z
        .string({ error: typeError('a string') })
        .regex(new RegExp(REGION_PATTERN), { error: (iss) => `${show(iss.input)} is not an AWS region (e.g. "us-west-2")` })
        .optional()
        .describe(
          'Second region (type aws): a request that fails in the primary region with a server error, timeout or network error (after the SDK retries) is sent here (a replica secret of the same name; an ARN with its region replaced; SSM parameters by name). Terminal errors (AccessDenied, not found) never fail over. Must differ from region. Restart-only.',
        ),
      assumeRoleArn: z
        .string({ error: typeError('a string') })
        .regex(new RegExp(ROLE_ARN_PATTERN), {
          error: (iss) => `${show(iss.input)} is not an IAM role ARN (e.g. "arn:aws:iam::123456789012:role/app-secrets")`,
        })
        .optional()
        .describe('IAM role to assume after the pod identity (type aws), for cross-account access.'),
      allowNodeRole: z
        .boolean({ error: typeError('true or false') })
        .optional()
        .describe(
          'Allow the node\'s instance role (type aws): with no IRSA, EKS Pod Identity, environment keys or profile in the container, use the default credential chain, instance metadata (IMDS) included; logged as a warning at start-up. Default false: the agent refuses to start (exit 2) rather than borrow the node\'s identity.',
        ),
      path: text('Secrets file (type file): a mapping of secret id to a string or an object (= JSON secret). Relative to the config file.').optional(),
    },
    { error: typeError('a mapping (e.g. type: aws)') },
  )
  .meta({
    if: { properties: { type: { const: 'file' } }, required: ['type'] },
    then: { required: ['path'], properties: { region: false, failoverRegion: false, assumeRoleArn: false, allowNodeRole: false } },
    else: { properties: { path: false } },
  })
  .describe('Secret source. Default: {type: aws}.');

const secretSchema = z
  .strictObject(
    {
      id: text('Secrets Manager: secret name or full ARN.', ' (the secret name or ARN, e.g. id: prod/app/db)')
        .max(2048, { error: 'is longer than 2048 characters' })
        .optional(),
      parameter: checked(
        'SSM Parameter Store: one parameter, by name ("/prod/app/db/password") or full ARN. String, StringList or SecureString (decrypted).',
        parameterNameReason,
        { pattern: PARAMETER_NAME_JSON, maxLength: PARAMETER_NAME_MAX },
      ).optional(),
      parameterPath: checked(
        'SSM Parameter Store: every parameter under this path, recursively ("/prod/app/"); templates see an object keyed by the name relative to the path.',
        parameterPathReason,
        { pattern: PARAMETER_PATH_JSON, maxLength: PARAMETER_PATH_MAX },
      ).optional(),
      version: z
        .int({ error: (iss) => `must be a parameter version number (1, 2, ...), not ${show(iss.input)}` })
        .min(1, { error: 'must be a parameter version number (1, 2, ...)' })
        .optional()
        .describe('With parameter: pin this version: fetched once, never refreshed. Excludes label.'),
      label: checked('With parameter: follow the version this parameter label points at. Excludes version.', parameterLabelReason, {
        pattern: PARAMETER_LABEL_JSON,
        maxLength: 100,
      }).optional(),
      versionStage: text('With id: staging label to follow. Default: AWSCURRENT.')
        .max(256, { error: 'is longer than 256 characters' })
        .optional(),
      versionId: z
        .string({ error: typeError('a string') })
        .regex(/^[A-Za-z0-9-]{32,64}$/, {
          error: (iss) => `${show(iss.input)} is not a version id (32 to 64 letters, digits or "-", usually a UUID)`,
        })
        .optional()
        .describe('With id: pin one version: fetched once, never refreshed. Excludes versionStage.'),
      // --- refreshInterval: never (fetch once) ---
      refreshInterval: refreshIntervalSchema().optional(),
      // --- end refreshInterval: never ---
    },
    { error: typeError('a mapping with id, parameter or parameterPath (e.g. db: {id: prod/app/db})') },
  )
  .meta({
    oneOf: [{ required: ['id'] }, { required: ['parameter'] }, { required: ['parameterPath'] }],
    dependentSchemas: {
      versionId: { required: ['id'], properties: { versionStage: false, refreshInterval: false } },
      versionStage: { required: ['id'] },
      version: { required: ['parameter'], properties: { label: false, refreshInterval: false } },
      label: { required: ['parameter'] },
    },
  });

const fileSchema = z
  .strictObject(
    {
      path: z
        .string({ error: typeError('a string', ' (relative to outputDir, e.g. path: db.env)') })
        .regex(new RegExp(FILE_PATH_PATTERN), {
          error: (iss) => (typeof iss.input === 'string' ? unsafePathReason(iss.input) : undefined) ?? `${show(iss.input)} is not a safe relative path`,
          abort: true,
        })
        .refine((p) => unsafePathReason(p) === undefined, { error: (iss) => unsafePathReason(String(iss.input)) })
        .describe('Output file, relative to outputDir. Subdirectories are allowed ("certs/tls.crt"); no "..", no leading "/" or ".".')
        .optional(),
      // --- eachKey files and decode ---
      dir: z
        .string({ error: typeError('a string', ' (relative to outputDir, e.g. dir: api, or dir: . for outputDir itself)') })
        .refine((p) => p === '.' || unsafePathReason(p) === undefined, { error: (iss) => unsafePathReason(String(iss.input)) })
        .meta({ pattern: `^(?:\\.|${FILE_PATH_PATTERN.slice(1, -1)})$` })
        .optional()
        .describe('With eachKey: the directory the keys are written to, relative to outputDir ("." = outputDir itself). Instead of path.'),
      eachKey: z
        .literal(true, { error: (iss) => (iss.input === undefined ? 'required key is missing' : `must be true (with dir and secret), not ${show(iss.input)}`) })
        .optional()
        .describe('With dir and secret: one file <dir>/<key> per top-level key of the secret\'s JSON object (of the value at key, when given); keys added or removed in the secret add or remove files. A key that is not a safe file name is a render error naming the key.'),
      decode: z
        .enum(['none', 'base64', 'base64url', 'auto'], {
          error: (iss) => `${show(iss.input)} is not a decoding (use "none", "base64", "base64url" or "auto")`,
        })
        .optional()
        .describe('With secret and no template: decode the bytes before writing them. "base64" (standard, padded), "base64url" (URL alphabet, padded), "auto" (base64, else base64url, else as they are: ESO\'s Auto), "none" (default). For eachKey: each key\'s value.'),
      // --- end eachKey files and decode ---
      // --- env files ---
      envFile: z
        .string({ error: typeError('a string', ' (a directory relative to outputDir, e.g. envFile: db-creds, or envFile: . for outputDir itself)') })
        .refine((p) => p === '.' || unsafePathReason(p) === undefined, { error: (iss) => unsafePathReason(String(iss.input)) })
        .meta({ pattern: `^(?:\\.|${FILE_PATH_PATTERN.slice(1, -1)})$` })
        .optional()
        .describe('With path: write an env file for Kubernetes env[].valueFrom.fileKeyRef: one KEY=value line per file directly in this directory (relative to outputDir, "." = outputDir itself), the file name as key and its bytes as value (docs/env-files.md). A value the syntax cannot carry is a render error naming the key.'),
      envSyntax: z
        .enum(['quoted', 'plain'], { error: (iss) => `${show(iss.input)} is not an env file syntax (use "quoted" for Kubernetes 1.35 and later, "plain" for 1.34)` })
        .optional()
        .describe('With envFile: "quoted" (default): KEY=\'value\', as the kubelet of Kubernetes 1.35 and later reads it (and a POSIX shell sources it). "plain": KEY=value, as the kubelet of 1.34 (EnvFiles alpha) reads it.'),
      // --- end env files ---
      template: z
        .string({ error: typeError('a string') })
        .optional()
        .describe('Inline Liquid template. Context: secrets.<name>, raw.<name>, meta.<name>.'),
      templateFile: text('Liquid template file, relative to the config file.').optional(),
      secret: text('Local secret name: the file content (without template), or the template\'s main secret (`secret`, `raw_secret`, `meta_secret`).').optional(),
      key: text(
        'With `secret` and no template: write one field of the JSON secret, raw: the top-level key of that name, else the dotted path ("db.user"; a number indexes an array; "\\." is a literal dot), as ESO\'s property. Strings unquoted, objects and arrays as stored, null as nothing.',
      ).optional(),
      mode: z
        .string({ error: modeMessage })
        .regex(new RegExp(MODE_PATTERN), { error: modeMessage })
        .default('0400')
        .describe('File mode as a quoted octal string, "0400" to "0777". Default "0400".'),
      uid: z
        .int({ error: (iss) => `must be a non-negative integer (a numeric user id), not ${show(iss.input)}` })
        .min(0, { error: 'must be a non-negative integer (a numeric user id)' })
        .max(UID_MAX, { error: `must be at most ${UID_MAX}` })
        .optional()
        .describe('Owner user id (needs CAP_CHOWN). Prefer pod fsGroup + mode.'),
      gid: z
        .int({ error: (iss) => `must be a non-negative integer (a numeric group id), not ${show(iss.input)}` })
        .min(0, { error: 'must be a non-negative integer (a numeric group id)' })
        .max(UID_MAX, { error: `must be at most ${UID_MAX}` })
        .optional()
        .describe('Owner group id (needs CAP_CHOWN).'),
    },
    { error: typeError('a mapping with a path (e.g. - path: db.env)') },
  )
  .meta({
    anyOf: [{ required: ['template'] }, { required: ['templateFile'] }, { required: ['secret'] }, { required: ['envFile'] }],
    not: { required: ['template', 'templateFile'] },
    // --- eachKey files and decode ---
    oneOf: [{ required: ['path'] }, { required: ['dir'] }],
    dependentRequired: { dir: ['eachKey', 'secret'], eachKey: ['dir'] },
    // --- end eachKey files and decode ---
    dependentSchemas: {
      key: { required: ['secret'], properties: { template: false, templateFile: false } },
      // --- eachKey files and decode ---
      decode: { required: ['secret'], properties: { template: false, templateFile: false } },
      dir: { properties: { template: false, templateFile: false } },
      // --- end eachKey files and decode ---
      envFile: { required: ['path'], properties: { template: false, templateFile: false, secret: false, key: false, decode: false } },
      envSyntax: { required: ['envFile'] },
    },
  });

const notifySchema = z
  .strictObject(
    {
      signal: z
        .string({ error: typeError('a string') })
        .regex(new RegExp(SIGNAL_PATTERN), { error: (iss) => `${show(iss.input)} is not a signal name (e.g. "SIGHUP")`, abort: true })
        .refine((s) => normalizeSignal(s) !== undefined, { error: (iss) => `${show(iss.input)} is not a signal name (e.g. "SIGHUP")` })
        .optional()
        .describe('Send this signal ("SIGHUP" or "HUP") to `process` or the pid in `pidFile`.'),
      process: text('With signal: every process whose name (comm or argv[0] basename) matches.').optional(),
      pidFile: text('With signal: file holding the pid to signal (relative paths: to the config file).').optional(),
      exec: z
        .array(z.string({ error: typeError('a string') }), { error: typeError('a list of strings (e.g. ["/bin/reload", "--now"])') })
        .min(1, { error: 'must not be empty (e.g. ["/bin/reload", "--now"])' })
        .refine((argv) => argv[0] !== '', { error: 'the program (first element) must not be empty' })
        .optional()
        .describe('Run this command (argv list, no shell). Gets SECRETS_AGENT_CHANGED_FILES in its environment.'),
      http: z
        .string({ error: typeError('a string') })
        .refine((v) => httpUrlReason(v) === undefined, { error: (iss) => httpUrlReason(String(iss.input)) })
        .meta({ pattern: URL_PATTERN })
        .optional()
        .describe('POST to this URL; a 2xx answer is success. No "user:password@" and no port fetch refuses (e.g. 6000): both can never work.'),
      timeout: duration(10, '10ms', 'Deadline for exec (default 30s) or http (default 10s).').optional(),
      splay: duration(0, '0', 'Wait a random delay from 0 to this before notifying (spreads replicas). Default 0.').default('0'),
      files: z
        .array(z.string({ error: typeError('a string') }), { error: typeError('a list of file paths (e.g. [tls.crt, tls.key])') })
        .min(1, { error: 'must list at least one file (leave files out to notify on any change)' })
        .optional()
        .describe('Only notify when one of these files (paths as under files) changed. Default: any change.'),
      name: text('Label in logs and metrics; unique. Default: derived from the target.').optional(),
    },
    { error: typeError('a mapping with signal, exec or http') },
  )
  .meta({
    oneOf: [{ required: ['signal'] }, { required: ['exec'] }, { required: ['http'] }],
    dependentSchemas: {
      signal: { oneOf: [{ required: ['process'] }, { required: ['pidFile'] }], properties: { timeout: false } },
    },
    dependentRequired: { process: ['signal'], pidFile: ['signal'] },
  });

/** The shape of the configuration, without the rules that relate keys to each other. */
export const configShape = z
  .strictObject(
    {
      $schema: z.string({ error: typeError('a string') }).optional().describe('JSON Schema of this file (ignored).'),
      source: sourceSchema.optional(),
      outputDir: text('Directory the files are written to: the shared in-memory volume. Relative paths: to the config file.', ' (the shared volume, e.g. outputDir: /run/secrets/app)')
        .refine((d) => d.replace(/\/+$/, '') !== '', { error: 'must not be "/"', abort: true })
        .refine((d) => d.split('/').every((seg) => Buffer.byteLength(seg) <= NAME_MAX), {
          error: `has a directory name longer than ${NAME_MAX} bytes, the most Linux allows (NAME_MAX); shorten it`,
        }),
      layout: z
        .enum(['generations', 'files'], { error: (iss) => `${show(iss.input)} is not a layout (use "generations" or "files")` })
        .default('generations')
        .describe('"generations" (default): Kubernetes-style ..data link swap, all files at once. "files": plain files, each replaced by rename (for subPath mounts).'),
      // --- targets ---
      targets: z
        .array(
          z
            .string({ error: typeError('a string', ' (a directory relative to outputDir, e.g. db-creds)') })
            .regex(new RegExp(FILE_PATH_PATTERN), {
              error: (iss) => (typeof iss.input === 'string' ? unsafePathReason(iss.input) : undefined) ?? `${show(iss.input)} is not a safe relative path`,
              abort: true,
            })
            .refine((p) => unsafePathReason(p) === undefined, { error: (iss) => unsafePathReason(String(iss.input)) }),
          { error: typeError('a list of directories relative to outputDir (e.g. targets: [db-creds, api-keys])') },
        )
        .min(1, { error: 'must list at least one target (leave targets out to write outputDir as one root)' })
        .optional()
        .describe(
          'Subdirectories of outputDir that are each written as a root of their own (own ..data generation or ..manifest, own ..lock), so the volume can be mounted once per target with subPath: <target>. ' +
            'Every file path (and eachKey dir) then starts with a target ("db-creds/DB_PASSWORD"); targets are written in this order, notify runs once after all. Default: none (outputDir is the one root). Changing it needs a restart.',
        ),
      // --- end targets ---
      refresh: z
        .strictObject(
          {
            interval: duration(10, '10ms', 'How often each secret is checked. Default 5m.').default('5m'),
            jitter: z
              .number({ error: typeError('a number between 0 and 0.9') })
              .min(0, { error: 'must be between 0 and 0.9' })
              .max(0.9, { error: 'must be between 0 and 0.9' })
              .default(0.2)
              .describe('Random +/- fraction applied to every wait. Default 0.2.'),
            rotationAware: z
              .boolean({ error: typeError('true or false') })
              .default(true)
              .describe('Also check right after a secret\'s NextRotationDate. Default true.'),
            batchChecks: z
              .boolean({ error: typeError('true or false') })
              .default(false)
              .describe(
                'Secrets Manager: checks that fall due together share one ListSecrets per 10 secrets instead of one DescribeSecret each ' +
                  '(20 or more under one path: the path, 100 entries a call). ' +
                  'Needs secretsmanager:ListSecrets, which cannot be scoped to resources (the role sees every secret\'s name and metadata in the account, never values); ' +
                  'ListSecrets has a 100 TPS account quota and may lag changes by minutes. Falls back to DescribeSecret when refused or throttled. Default false; changing it needs a restart.',
              ),
          },
          { error: typeError('a mapping (e.g. refresh: {interval: 5m})') },
        )
        .prefault({})
        .describe('When secrets are checked for new versions.'),
      secrets: z
        .record(
          z.string().regex(new RegExp(SECRET_NAME_PATTERN), {
            error: (iss) => `${show(iss.input)} is not a valid secret name (letters, digits, "_" and "-", not starting with a digit or "-", at most 63)`,
          }),
          secretSchema,
          { error: typeError('a mapping of local name to {id: ...}, {parameter: ...} or {parameterPath: ...}') },
        )
        .prefault({})
        .describe('Local name -> secret: a Secrets Manager secret (id), an SSM parameter (parameter) or every parameter under an SSM path (parameterPath). The name is used in templates (secrets.<name>), logs and metrics.'),
      files: z
        .array(fileSchema, { error: typeError('a list of files', ' (the files to write, e.g. files: [{path: db.env, secret: db}])') })
        .min(1, { error: 'must list at least one file' })
        .describe('Files to write under outputDir. Each has exactly one of template, templateFile or secret (a template may also name its main secret).'),
      notify: z
        .array(notifySchema, { error: typeError('a list') })
        .prefault([])
        .describe('What to tell after a write that changed at least one file; run in order.'),
      server: z
        .strictObject(
          {
            listen: z
              .string({ error: typeError('a string') })
              .refine((v) => listenReason(v) === undefined, { error: (iss) => listenReason(String(iss.input)) })
              .meta({ pattern: LISTEN_PATTERN })
              .default('0.0.0.0:9102')
              .describe('host:port for /metrics, /healthz and /readyz; "" disables the server. Default "0.0.0.0:9102".'),
          },
          { error: typeError('a mapping (e.g. server: {listen: "0.0.0.0:9102"})') },
        )
        .prefault({})
        .describe('Metrics and health endpoints.'),
    },
    { error: typeError('a mapping') },
  )
  .meta({ title: 'secrets-agent configuration' });

/** The full schema, including the rules between keys (rules.ts). */
export const configSchema = configShape.superRefine((value, ctx) => {
  for (const issue of crossCheck(value)) ctx.addIssue({ code: 'custom', path: [...issue.path], message: issue.message });
});

export type ConfigInput = z.input<typeof configSchema>;
export type ConfigOutput = z.output<typeof configSchema>;

/** The JSON Schema (draft 2020-12) that scripts/schema.ts writes to schema/config.schema.json. */
export function buildJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'throw' });
}
