// JSON logs (pino) by default, one line per event; `text` for humans.
// Secret values are never passed to the logger: log names, ids, versions, codes.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  format?: 'json' | 'text';
  /** Where to write; default stderr (fd 2), so stdout stays for command output. */
  destination?: NodeJS.WritableStream | number;
}

const LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function isLogLevel(level: string): level is LevelWithSilent {
  return LEVELS.includes(level);
}

export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? 'info';
  const dest = options.destination ?? 2;
  const stream = typeof dest === 'number' ? pino.destination({ fd: dest, sync: true }) : dest;
  if (options.format === 'text') {
    return pino(
      {
        level,
        base: undefined,
        timestamp: false,
        formatters: { level: (label) => ({ level: label }) },
      },
      textStream(stream),
    );
  }
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, stream);
}

/** A tiny line formatter: `LEVEL msg key=value ...` (pino-pretty is a dev dependency we do not need). */
function textStream(out: NodeJS.WritableStream | { write(s: string): unknown }): { write(line: string): void } {
  return {
    write(line: string) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      const { level, msg, ...rest } = rec;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
        .join(' ');
      out.write(`${typeof level === 'string' ? level.toUpperCase() : 'LOG'} ${typeof msg === 'string' ? msg : ''}${fields ? ' ' + fields : ''}\n`);
    },
  };
}
