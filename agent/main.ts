#!/usr/bin/env node
// secrets-agent's entry point: `node agent/main.ts <command>` and the bundle
// (scripts/build.ts bundles this file into dist/secrets-agent.mjs, under any
// name). It installs the process handlers, runs main() (agent/cli/index.ts) and
// exits with its code. Nothing imports this file; tests call main() directly.
//
// Order matters: the signal guard (agent/signals.ts: refuse an inspector, guard
// SIGUSR1/SIGUSR2/SIGHUP) runs before any other module of the agent loads, so
// the CLI is imported dynamically after it.
//
// Layering (enforced by eslint: import-x/no-restricted-paths, import-x/no-cycle),
// each layer imports only from the layers below it:
//
//   cli/                                   commands: wiring, errors -> exit codes
//   pipeline.ts, refresh/, eso/            fetch -> render -> write; when to check, reload; ESO conversion
//   inject/, webhook/                      the agent added to pod specs: offline (inject) and at admission (webhook)
//   source/  render/  output/  notify/     the stages
//   observe/  config/  errors.ts  types.ts  signals.ts  version.ts
import { guardProcess } from './signals.ts';

guardProcess();

process.on('unhandledRejection', (reason) => {
  // A daemon must not die silently; typescript-eslint keeps these out, this reports any that slip through.
  process.stderr.write(`{"level":"fatal","msg":"unhandled rejection","err":${JSON.stringify(String((reason as Error)?.message ?? reason))}}\n`);
  process.exit(1); // EXIT_FAILED (agent/cli/common.ts)
});
// If the event loop ever drains before main() settles, that is a failure, never a silent 0.
process.exitCode = 1; // EXIT_FAILED

const { main } = await import('./cli/index.ts');
main(process.argv.slice(2)).then(
  // Exit explicitly: logs are written synchronously, and a lingering keep-alive
  // socket must not hold an init container open after its work is done.
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fatal: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(1); // EXIT_FAILED (agent/cli/common.ts)
  },
);
