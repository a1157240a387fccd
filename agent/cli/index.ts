// The command line: flags and the environment -> GlobalOptions, the command's
// dispatch, and every error -> an exit code (agent/cli/common.ts). Writes only
// usage errors and the help/version text itself; everything else goes to the log.
//
// Exports main(argv) -> exit code, and never exits the process: the entry
// (agent/main.ts) installs the process handlers, calls it and exits; tests call
// it in-process. Each command is loaded only when it runs (a dynamic import).
import { parseArgs } from 'node:util';
import { ConfigError, reportConfigError, SetupError } from '../errors.ts';
import { createLogger, isLogLevel } from '../observe/log.ts';
import { VERSION } from '../version.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, type GlobalOptions } from './common.ts';
import { argumentError, commandHelp, COMMANDS, wantsHelp } from './help.ts';

const USAGE = `secrets-agent ${VERSION} — AWS Secrets Manager secrets as files in Kubernetes pods

Usage: secrets-agent <command> [flags]

Commands:
  init                     fetch, render and write every file once, then exit (init container)
  run                      first render, then keep the files fresh and notify the app (sidecar)
  validate [--workload KIND]
                           check the config and templates offline (no network); lists every problem
                           (with KIND, e.g. Job: also what that workload kind rules out)
  render --output-dir DIR  fetch and render once into DIR exactly as init would (debugging, CI)
  convert eso [--output-dir DIR] FILE...
                           External Secrets Operator manifests -> an agent config on stdout (docs/eso.md)
  inject (--config FILE | --from-eso FILE...) [--image IMAGE] FILE...
                           workload manifests -> the same with the agent added, on stdout (docs/inject.md)
  webhook --tls-cert-file FILE --tls-private-key-file FILE [--listen HOST:PORT]
                           the admission webhook: the same mutation for annotated pods (docs/webhook.md)
  version                  print the version
  help                     this text

Flags:
  --config PATH            config file (env SECRETS_AGENT_CONFIG; default /etc/secrets-agent/config.yaml)
  --log-level LEVEL        fatal|error|warn|info|debug|trace|silent (env LOG_LEVEL; default info)
  --log-format FORMAT      json|text (default json)
  --timeout DURATION       init/render: give up retrying transient errors after this long (default 2m)
  --output-dir DIR         render: where to write instead of the config's outputDir
  --listen HOST:PORT       run: serve /metrics, /healthz, /readyz here instead of server.listen ("127.0.0.1:0": a free port)

Exit codes: 0 ok; 1 a secret or file could not be produced; 2 usage or configuration error.
"secrets-agent <command> --help" shows a command's flags and an example. Docs: README.md`;

function parse(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        timeout: { type: 'string' },
        'output-dir': { type: 'string' },
        listen: { type: 'string' },
        workload: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new UsageError(argumentError(err as Error, argv[0] !== undefined && argv[0] in COMMANDS ? argv[0] : undefined));
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  // `<command> --help` / `-h`, and `help <command>`: that command's usage, flags and an example.
  const asked = argv[0] === 'help' ? argv[1] : wantsHelp(argv.slice(1)) ? argv[0] : undefined;
  if (asked !== undefined && asked in COMMANDS) {
    process.stdout.write(commandHelp(asked));
    return EXIT_OK;
  }
  // `convert` has its own arguments (a subcommand and files): cli/convert.ts parses them.
  if (argv[0] === 'convert') {
    const { convert } = await import('./convert.ts');
    return convert(argv.slice(1));
  }
  // `inject` too (manifests and its own flags): cli/inject.ts.
  if (argv[0] === 'inject') {
    const { inject } = await import('./inject.ts');
    return inject(argv.slice(1));
  }
  // `webhook` too (a server with its own flags, named as Kubernetes components name them): cli/webhook.ts.
  if (argv[0] === 'webhook') {
    const { webhook } = await import('./webhook.ts');
    return webhook(argv.slice(1));
  }
  let args;
  try {
    args = parse(argv);
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  const { values, positionals } = args;
  const command = values.help ? 'help' : values.version ? 'version' : (positionals[0] ?? 'help');
  if (positionals.length > 1) {
    process.stderr.write(`error: unexpected argument "${positionals[1]}"\nRun "secrets-agent --help" for usage.\n`);
    return EXIT_USAGE;
  }
  if (command === 'help') {
    process.stdout.write(USAGE + '\n');
    return positionals[0] === undefined && !values.help ? EXIT_USAGE : EXIT_OK;
  }
  if (command === 'version') {
    process.stdout.write(`secrets-agent ${VERSION} (node ${process.version})\n`);
    return EXIT_OK;
  }

  const logLevel = values['log-level'] ?? process.env.LOG_LEVEL ?? 'info';
  const logFormat = values['log-format'] ?? 'json';
  if (!isLogLevel(logLevel)) {
    process.stderr.write(`error: --log-level "${logLevel}" is not one of fatal|error|warn|info|debug|trace|silent\n`);
    return EXIT_USAGE;
  }
  if (logFormat !== 'json' && logFormat !== 'text') {
    process.stderr.write(`error: --log-format "${logFormat}" is not json or text\n`);
    return EXIT_USAGE;
  }
  const log = createLogger({ level: logLevel, format: logFormat });
  // An empty path would be reported as `: file not found`: say which setting is empty.
  if (values.config === '') {
    process.stderr.write('error: --config is empty; give the config file\'s path, or leave --config out\n');
    return EXIT_USAGE;
  }
  if (values.config === undefined && process.env.SECRETS_AGENT_CONFIG === '') {
    process.stderr.write('error: SECRETS_AGENT_CONFIG is set but empty; set it to the config file\'s path, or unset it to use /etc/secrets-agent/config.yaml\n');
    return EXIT_USAGE;
  }
  const opts: GlobalOptions = {
    configPath: values.config ?? process.env.SECRETS_AGENT_CONFIG ?? '/etc/secrets-agent/config.yaml',
    log,
    logLevel,
    logFormat,
  };

  try {
    if (values.listen !== undefined && command !== 'run') throw new UsageError(`--listen is for run (the sidecar's /metrics, /healthz and /readyz), not ${command}`);
    switch (command) {
      case 'validate': {
        const { validate } = await import('./validate.ts');
        return await validate(opts, { workload: values.workload });
      }
      case 'init':
      case 'render': {
        if (values.workload !== undefined) throw new UsageError('--workload is for validate');
        if (command === 'render' && !values['output-dir']) throw new UsageError('render needs --output-dir DIR');
        if (command === 'init' && values['output-dir']) throw new UsageError('--output-dir is for render; init writes to the config\'s outputDir');
        const { init } = await import('./init.ts');
        return await init(opts, { timeout: values.timeout, outputDir: values['output-dir'] });
      }
      case 'run': {
        if (values.timeout || values['output-dir'] || values.workload !== undefined) throw new UsageError('run takes none of --timeout, --output-dir, --workload');
        if (values.listen !== undefined) opts.listen = values.listen;
        const { run } = await import('./run.ts');
        return await run(opts);
      }
      default:
        throw new UsageError(`unknown command "${command}"\nRun "secrets-agent --help" for usage.`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n`);
      return EXIT_USAGE;
    }
    // A config file that cannot be read at start is the command line's mistake: a plain line, as for the
    // other usage errors. Problems inside the file are log lines with file, line and key.
    if (err instanceof ConfigError && err.unreadable) {
      process.stderr.write(`error: ${err.message}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof ConfigError) {
      reportConfigError(err, log);
      return EXIT_USAGE;
    }
    if (err instanceof SetupError) {
      // An operator mistake (a port in use, no region): one line saying what to fix, no stack.
      log.error({ config: opts.configPath, key: err.key, ...(err.code === undefined ? {} : { code: err.code }) }, err.message);
      return EXIT_USAGE;
    }
    // Unexpected: a bug. Log the error name and message only (never a value) and fail.
    log.fatal({ err: { name: (err as Error).name, message: (err as Error).message, stack: (err as Error).stack } }, 'unexpected error');
    return EXIT_FAILED;
  }
}
