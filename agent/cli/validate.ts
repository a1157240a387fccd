// `validate`: offline checks, no network. Schema, paths, cross-references (config
// loader), then every template compiles and uses only declared secrets (renderer).
// Every problem is listed, not only the first. With `--workload KIND` (the kind of
// workload the config is for), also what that kind rules out: a restart notify for
// a Job or CronJob (`inject` refuses the same from the manifests themselves).
import { loadConfig } from '../config/index.ts';
import { ConfigError } from '../errors.ts';
import { EXIT_OK, UsageError, type GlobalOptions } from './common.ts';
import { restartRefusal } from '../notify/restart.ts';
import { compileFiles } from '../render/render.ts';

/** The kinds `--workload` takes: the ones `inject` injects into. */
export const WORKLOAD_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Pod', 'Job', 'CronJob'] as const;

export async function validate(opts: GlobalOptions, flags: { workload?: string | undefined } = {}): Promise<number> {
  const kind = flags.workload === undefined ? undefined : WORKLOAD_KINDS.find((k) => k.toLowerCase() === flags.workload!.toLowerCase());
  if (flags.workload !== undefined && kind === undefined) {
    throw new UsageError(`--workload "${flags.workload}" is not a workload kind (use one of ${WORKLOAD_KINDS.join(', ')})`);
  }
  const config = await loadConfig(opts.configPath);
  await compileFiles(config);
  const refusal = kind === undefined ? undefined : restartRefusal(kind);
  if (refusal !== undefined) {
    const issues = config.notify.flatMap((n, i) =>
      n.kind === 'restart' ? [{ file: opts.configPath, ...lineOf(config.lineOf(`notify[${i}].restart`)), path: `notify[${i}].restart`, message: refusal }] : [],
    );
    if (issues.length > 0) throw new ConfigError(issues);
  }
  process.stdout.write(
    `${opts.configPath}: ok (${config.secrets.length} secret(s), ${config.files.length} file(s), ${config.notify.length} notify target(s)${kind === undefined ? '' : `, for a ${kind}`})\n`,
  );
  return EXIT_OK;
}

const lineOf = (line: number | undefined): { line?: number } => (line === undefined ? {} : { line });
