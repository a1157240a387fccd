// A child process that runs the agent's own `main()` (agent/cli/index.ts) in-process
// for many argument lists, one at a time, on request over IPC, so a thousand
// generated configs cost a thousand calls, not a thousand Node start-ups.
//
// main() writes its logs straight to fd 2 (pino, synchronously) and results to
// stdout, so each call is framed by markers written to both streams; the parent
// cuts each call's output out between them. A throw out of main(), an
// unhandled rejection or an uncaught exception is reported in the answer.
//
// Protocol: parent sends { id, args }; the worker answers { id, code, threw? }
// after writing `\n@@END <id>@@\n` to stdout and stderr.
import { writeSync } from 'node:fs';
import { main } from '../../agent/cli/index.ts';

interface Request {
  id: number;
  args: string[];
}

let escaped: string | undefined;
process.on('unhandledRejection', (reason) => {
  escaped = `unhandledRejection: ${(reason as Error)?.name ?? typeof reason}`;
});
process.on('uncaughtException', (err) => {
  escaped = `uncaughtException: ${err.name}`;
});

let queue: Promise<void> = Promise.resolve();
process.on('message', (msg: Request) => {
  queue = queue.then(async () => {
    writeSync(1, `\n@@START ${msg.id}@@\n`);
    writeSync(2, `\n@@START ${msg.id}@@\n`);
    let code: number | undefined;
    let threw: string | undefined;
    escaped = undefined;
    try {
      code = await main(msg.args);
    } catch (err) {
      // Name and message only: the stack goes nowhere.
      threw = `${(err as Error)?.name}: ${(err as Error)?.message}`;
    }
    // Let a stray rejection from this call surface before answering.
    await new Promise((r) => setImmediate(r));
    writeSync(1, `\n@@END ${msg.id}@@\n`);
    writeSync(2, `\n@@END ${msg.id}@@\n`);
    process.send?.({ id: msg.id, code, threw: threw ?? escaped });
  });
});
process.send?.({ id: -1, code: 0 });
