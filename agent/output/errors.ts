// Error text of the writer: every message has one shape,
//
//   <what went wrong> <doing> <outputDir>: <state>; <what to do>
//
// e.g. `no space left on device writing "tls.key" to /run/secrets/app: the
// previous files are unchanged; raise the emptyDir sizeLimit`. <state> says
// honestly what is left on the volume (UNCHANGED when nothing the consumer reads
// was touched). Messages carry names and paths only, never file content.
import { getSystemErrorMessage } from 'node:util';
import { WriteError } from '../errors.ts';

/** The <state> of an error after which every file the consumer reads is as it was. */
export const UNCHANGED = 'the previous files are unchanged';

/** The errno code (`ENOSPC`) of a Node error, or undefined. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * `<what went wrong> <doing> <outputDir>: <state>; <what to do>`, e.g.
 * `no space left on device writing "tls.key" to /run/secrets/app: the previous files are unchanged; raise the emptyDir sizeLimit`.
 * The cause's own message is not used: it carries /proc/self/fd paths, not the user's.
 */
export function ioError(cause: unknown, doing: string, outputDir: string, state: string, chown = false): WriteError {
  if (cause instanceof WriteError) return cause;
  const code = errnoOf(cause) ?? 'EIO';
  const [what, hint] = explain(code, cause, chown);
  return new WriteError(`${what} ${doing} ${outputDir}: ${state}${hint ? `; ${hint}` : ''}`, code, { cause });
}

function explain(code: string, cause: unknown, chown: boolean): [string, string] {
  switch (code) {
    case 'ENOSPC':
      return ['no space left on device', 'raise the emptyDir sizeLimit'];
    case 'EDQUOT':
      return ['disk quota exceeded', 'raise the quota of the volume'];
    case 'EACCES':
    case 'EPERM':
      return chown
        ? ['not permitted to set the owner', 'setting uid/gid needs root or CAP_CHOWN: grant it or drop uid/gid from the file']
        : ['permission denied', 'run the agent as a user that can write outputDir (securityContext runAsUser or fsGroup)'];
    case 'EROFS':
      return ['read-only file system (EROFS)', 'the volume is read-only: mount it writable in the agent container (volumeMounts readOnly: false)'];
    case 'EMFILE':
    case 'ENFILE':
      return ['too many open files', 'raise the open-file limit'];
    case 'ENAMETOOLONG':
      return ['name too long', 'use shorter file paths'];
    case 'EEXIST':
      return ['an unexpected entry appeared', 'another process is writing to outputDir: only the agent may write there'];
    default: {
      const errno = (cause as NodeJS.ErrnoException | undefined)?.errno;
      return [typeof errno === 'number' ? `${code} (${getSystemErrorMessage(errno)})` : `${code} error`, ''];
    }
  }
}
