// Per-command help and the "did you mean" for a mistyped flag. One table says,
// for each command, its usage line, what it does, its flags and an example;
// `secrets-agent <command> --help` (or -h) prints that command's entry, and an
// unknown flag is answered with the nearest flag of that command.
// Imports nothing of the commands: cli/index.ts, convert.ts and inject.ts use it.

export interface CommandHelp {
  readonly usage: string;
  readonly does: string;
  /** [flag as written, what it does] */
  readonly flags: readonly (readonly [string, string])[];
  readonly examples: readonly string[];
}

const LOGGING: readonly (readonly [string, string])[] = [
  ['--config PATH', 'the config file (env SECRETS_AGENT_CONFIG; default /etc/secrets-agent/config.yaml)'],
  ['--log-level LEVEL', 'fatal|error|warn|info|debug|trace|silent (env LOG_LEVEL; default info)'],
  ['--log-format FORMAT', 'json|text (default json, one object per line)'],
];

export const COMMANDS: Readonly<Record<string, CommandHelp>> = {
  init: {
    usage: 'secrets-agent init [--config PATH] [--timeout DURATION]',
    does: 'Fetch every secret, render every file and write them to outputDir as one generation, then exit (the init container). Transient errors are retried until --timeout.',
    flags: [...LOGGING, ['--timeout DURATION', 'give up retrying transient errors after this long (default 2m, at most 168h)']],
    examples: ['secrets-agent init --config /etc/secrets-agent/config/config.yaml --timeout 1m'],
  },
  run: {
    usage: 'secrets-agent run [--config PATH] [--listen HOST:PORT]',
    does: 'First render, then keep the files fresh as secrets change, swap them atomically and notify the app; serves /metrics, /healthz and /readyz (the sidecar). Stops on SIGTERM; SIGHUP reloads the config.',
    flags: [...LOGGING, ['--listen HOST:PORT', 'serve the endpoints here instead of server.listen ("127.0.0.1:0": a free port)']],
    examples: ['secrets-agent run --config examples/dev/config.yaml --log-format text'],
  },
  validate: {
    usage: 'secrets-agent validate [--config PATH] [--workload KIND]',
    does: 'Check the config and its templates offline (no network): lists every problem with file and line. Exit 0 valid, 2 not.',
    flags: [...LOGGING, ['--workload KIND', 'also check what that workload kind rules out (Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod, Job, CronJob): a restart notify for a Job or CronJob']],
    examples: ['secrets-agent validate --config examples/dev/config.yaml'],
  },
  render: {
    usage: 'secrets-agent render --output-dir DIR [--config PATH] [--timeout DURATION]',
    does: 'Fetch and render once into DIR exactly as init would, without touching outputDir (debugging, CI).',
    flags: [...LOGGING, ['--output-dir DIR', 'where to write (required)'], ['--timeout DURATION', 'as for init']],
    examples: ['secrets-agent render --config examples/dev/config.yaml --output-dir /tmp/preview'],
  },
  convert: {
    usage: 'secrets-agent convert eso [--output-dir DIR] FILE...   ("-" reads stdin)',
    does: 'External Secrets Operator manifests (SecretStore, ClusterSecretStore, ExternalSecret) -> one agent config on stdout; notes and what could not be converted on stderr. Exit 0 all converted, 1 parts not converted (listed), 2 unusable input.',
    flags: [['--output-dir DIR', 'the outputDir of the printed config (default /run/secrets-agent)']],
    examples: ['secrets-agent convert eso examples/eso/secretstore.yaml examples/eso/externalsecret.yaml > config.yaml'],
  },
  inject: {
    usage: 'secrets-agent inject (--config FILE | --from-eso FILE... [--keys SECRET=KEY,...]... [--env-syntax quoted|plain] [--env-mode fileKeyRef|entrypoint]) [--image IMAGE] FILE...   ("-" reads stdin)',
    does: 'Workload manifests -> the same manifests with the agent added (a native sidecar, or an init container for Jobs) and its config as a ConfigMap, on stdout. Offline.',
    flags: [
      ['--config FILE', 'the agent config to deploy'],
      ['--from-eso FILE', 'build the config from these ESO manifests (repeatable) and rewrite what referenced their Secrets'],
      ['--keys SECRET=KEY,...', "with --from-eso: the key names of an ESO Secret that cannot be known offline (dataFrom), for its envFrom (repeatable)"],
      ['--env-syntax SYNTAX', 'with --from-eso: quoted (Kubernetes 1.35+, default) or plain (1.34) env files (docs/env-files.md)'],
      ['--env-mode MODE', 'with --from-eso: fileKeyRef (default; EnvFiles) or entrypoint (clusters without EnvFiles: the app starts through /bin/sh)'],
      ['--restart PROCESS', "with --from-eso: add a restart notify for the app container's main process, so rotations reach env vars (docs/notify.md)"],
      ['--image IMAGE', "the agent's image (default: this version's released image)"],
    ],
    examples: ['secrets-agent inject --from-eso examples/eso/secretstore.yaml --from-eso examples/eso/externalsecret.yaml examples/eso/deployment.yaml'],
  },
  webhook: {
    usage: 'secrets-agent webhook --tls-cert-file FILE --tls-private-key-file FILE [--listen HOST:PORT] [--metrics-listen HOST:PORT]',
    does: 'The mutating admission webhook: the same mutation as inject, for pods labelled or annotated secrets-agent.io/inject: "true", answered as a JSON Patch over HTTPS; reloads its certificate when the files change; on SIGTERM finishes the reviews in flight (docs/webhook.md).',
    flags: [
      ['--tls-cert-file FILE', 'the serving certificate (PEM; reloaded when it changes)'],
      ['--tls-private-key-file FILE', 'its private key (PEM)'],
      ['--listen HOST:PORT', 'where the API server sends reviews (default 0.0.0.0:8443)'],
      ['--metrics-listen HOST:PORT', 'plain HTTP /metrics, /healthz, /readyz (default 0.0.0.0:9102)'],
      ['--image IMAGE', "the agent's image for the pods it mutates (default: this version's released image)"],
      ['--shutdown-delay DURATION', 'after SIGTERM, answer reviews this long before closing (default 5s)'],
      ['--log-level LEVEL', 'fatal|error|warn|info|debug|trace|silent (env LOG_LEVEL; default info)'],
      ['--log-format FORMAT', 'json|text (default json)'],
    ],
    examples: ['secrets-agent webhook --tls-cert-file /etc/webhook/tls/tls.crt --tls-private-key-file /etc/webhook/tls/tls.key'],
  },
  version: { usage: 'secrets-agent version', does: 'Print the version and the Node.js version.', flags: [], examples: ['secrets-agent version'] },
};

/** `secrets-agent <command> --help`: usage, what it does, flags, example. */
export function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const width = Math.max(0, ...c.flags.map(([f]) => f.length)) + 2;
  const flags = c.flags.length === 0 ? '' : `\nFlags:\n${c.flags.map(([f, d]) => `  ${f.padEnd(width)}${d}`).join('\n')}\n  ${'-h, --help'.padEnd(width)}this text\n`;
  return `Usage: ${c.usage}\n\n${c.does}\n${flags}\nExample:\n${c.examples.map((e) => `  ${e}`).join('\n')}\n`;
}

/** --help or -h among the arguments (before a "--" that ends the flags). */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const here = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = here;
    }
  }
  return row[b.length]!;
}

/**
 * The message for a parseArgs error: an unknown flag gets the command's nearest flag ("did you mean"),
 * anything else keeps Node's message. Ends with where the help is.
 */
export function argumentError(err: Error, command: string | undefined): string {
  const helpLine = command && COMMANDS[command] ? `Run "secrets-agent ${command} --help" for its flags.` : 'Run "secrets-agent --help" for usage.';
  const m = /^Unknown option '(-{1,2}[^']+)'/.exec(err.message);
  if (!m) return `${err.message}\n${helpLine}`;
  const given = m[1]!.split('=')[0]!;
  const known = command && COMMANDS[command] ? COMMANDS[command].flags.map(([f]) => f.split(' ')[0]!) : [...new Set(Object.values(COMMANDS).flatMap((c) => c.flags.map(([f]) => f.split(' ')[0]!)))];
  const near = known.map((k) => [k, distance(given, k)] as const).sort((a, b) => a[1] - b[1])[0];
  const suggestion = near && near[1] <= Math.max(2, Math.floor(near[0].length / 3)) ? `; did you mean ${near[0]}?` : '';
  return `unknown flag ${given}${command ? ` for ${command}` : ''}${suggestion}\n${helpLine}`;
}
