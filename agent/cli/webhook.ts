// `secrets-agent webhook --tls-cert-file FILE --tls-private-key-file FILE
// [--listen HOST:PORT] [--metrics-listen HOST:PORT] [--image IMAGE]
// [--shutdown-delay DURATION] [--log-level LEVEL] [--log-format json|text]`:
// the mutating admission webhook (agent/webhook/, docs/webhook.md). Serves
// until SIGTERM/SIGINT, then finishes the reviews in flight and exits 0.
// Exit codes: 0 stopped by a signal; 2 a usage error, or a certificate or
// address it cannot use (one line saying what to fix).
import { parseArgs } from 'node:util';
import { parseDuration } from '../config/duration.ts';
import { IMAGE } from '../deploy.ts';
import { SetupError } from '../errors.ts';
import { createLogger, isLogLevel } from '../observe/log.ts';
import { handleSignals } from '../signals.ts';
import { startWebhookServer } from '../webhook/server.ts';
import { EXIT_OK, EXIT_USAGE } from './common.ts';
import { argumentError } from './help.ts';

const USAGE =
  'usage: secrets-agent webhook --tls-cert-file FILE --tls-private-key-file FILE [--listen HOST:PORT (default 0.0.0.0:8443)] ' +
  '[--metrics-listen HOST:PORT (default 0.0.0.0:9102)] [--image IMAGE] [--shutdown-delay DURATION (default 5s)] [--log-level LEVEL] [--log-format json|text]';

export async function webhook(argv: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        'tls-cert-file': { type: 'string' },
        'tls-private-key-file': { type: 'string' },
        listen: { type: 'string', default: '0.0.0.0:8443' },
        'metrics-listen': { type: 'string', default: '0.0.0.0:9102' },
        image: { type: 'string', default: IMAGE },
        'shutdown-delay': { type: 'string', default: '5s' },
        'log-level': { type: 'string', default: process.env.LOG_LEVEL ?? 'info' },
        'log-format': { type: 'string', default: 'json' },
      },
    }));
  } catch (err) {
    process.stderr.write(`error: ${argumentError(err as Error, 'webhook')}\n`);
    return EXIT_USAGE;
  }
  const usage = (message: string): number => {
    process.stderr.write(`error: ${message}\n${USAGE}\n`);
    return EXIT_USAGE;
  };
  const cert = values['tls-cert-file'];
  const key = values['tls-private-key-file'];
  if (!cert || !key) return usage(`${!cert ? '--tls-cert-file' : '--tls-private-key-file'} is required (cert-manager's tls.crt and tls.key, mounted from the Certificate's Secret)`);
  const level = values['log-level'];
  const format = values['log-format'];
  if (!isLogLevel(level)) return usage(`--log-level "${level}" is not one of fatal|error|warn|info|debug|trace|silent`);
  if (format !== 'json' && format !== 'text') return usage(`--log-format "${format}" is not json or text`);
  const delay = parseDuration(values['shutdown-delay']);
  if (delay === undefined || delay > 60_000) return usage(`--shutdown-delay "${values['shutdown-delay']}" is not a duration up to 60s (e.g. 5s, 0)`);
  const log = createLogger({ level, format });

  let server;
  try {
    server = await startWebhookServer({
      listen: values.listen,
      metricsListen: values['metrics-listen'],
      certFile: cert,
      keyFile: key,
      image: values.image,
      shutdownDelayMs: delay,
      log,
    });
  } catch (err) {
    if (!(err instanceof SetupError)) throw err;
    log.error({ key: err.key, ...(err.code === undefined ? {} : { code: err.code }) }, err.message);
    return EXIT_USAGE;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal, shutdownDelay: values['shutdown-delay'] }, 'shutting down: /readyz fails now, reviews in flight finish');
      server.close().then(resolve, resolve);
    };
    handleSignals(log, { SIGTERM: stop, SIGINT: stop }, { SIGHUP: 'the webhook reloads its certificate when the files change' });
  });
  log.info('stopped');
  return EXIT_OK;
}
