// `validate`: offline checks, no network. Schema, paths, cross-references (config
// loader), then every template compiles and uses only declared secrets (renderer).
// Every problem is listed, not only the first.
import { loadConfig } from '../config/index.ts';
import { EXIT_OK, type GlobalOptions } from './common.ts';
import { compileFiles } from '../render/render.ts';

export async function validate(opts: GlobalOptions): Promise<number> {
  const config = await loadConfig(opts.configPath);
  await compileFiles(config);
  process.stdout.write(
    `${opts.configPath}: ok (${config.secrets.length} secret(s), ${config.files.length} file(s), ${config.notify.length} notify target(s))\n`,
  );
  return EXIT_OK;
}
