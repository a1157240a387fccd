// The local `file` source, for development and tests without AWS: a YAML or
// JSON map of secret id -> string (SecretString) or object (a JSON secret).
// A version id is a hash of the value, so the refresh loop sees an edit as a
// new version exactly as it would see a rotation in Secrets Manager.
//
// One read, one version of the file: every value handed out comes from a
// snapshot (one parse of the file), and readSnapshot()/fetchAll() answer all
// the secrets asked for from the same snapshot, so the runner can commit a
// generation that reflects one edit of the file. Checks made while the file is
// unchanged (same inode, size, mtime) share the snapshot already read.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { parse } from 'yaml';
import { SourceError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { SecretMetadata, SecretSpec, SecretValue } from '../types.ts';
import type { FetchResult, SecretSource, SourceSnapshot } from './source.ts';

interface Snapshot {
  /** Order of the read that produced it (1, 2, …). */
  readonly seq: number;
  readonly values: ReadonlyMap<string, SecretValue>;
  readonly error?: SourceError['code'];
  readonly message?: string;
}

export class FileSource implements SecretSource {
  readonly kind = 'file' as const;
  readonly #path: string;
  readonly #log: Logger;
  #snapshot: Promise<Snapshot> | undefined;
  #reads = 0;
  /** mtime/size/inode of the file the snapshot was read from: a change means re-read. */
  #stamp = '';

  constructor(path: string, log: Logger) {
    this.#path = path;
    this.#log = log;
  }

  describeIdentity(): Record<string, string> {
    return { source: 'file', path: this.#path };
  }

  /** Re-read the file only when its stat stamp changed (a stat is cheap; parsing 1,000 secrets is not). */
  async #load(): Promise<Snapshot> {
    let stamp = 'missing';
    try {
      const st = await stat(this.#path);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      // #read reports the error
    }
    if (!this.#snapshot || stamp !== this.#stamp) {
      this.#stamp = stamp;
      this.#snapshot = this.#read(++this.#reads);
    }
    return this.#snapshot;
  }

  async #read(seq: number): Promise<Snapshot> {
    let text: string;
    let mtime: Date;
    try {
      [text, mtime] = await Promise.all([readFile(this.#path, 'utf8'), stat(this.#path).then((s) => s.mtime)]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      return { seq, values: new Map(), error: code, message: `cannot read the secrets file ${this.#path}: ${code}` };
    }
    let doc: unknown;
    try {
      doc = parse(text);
    } catch (err) {
      // The YAML parser's message quotes the offending line, which may hold a value: keep only the position.
      const pos = (err as { linePos?: [{ line: number }] }).linePos?.[0]?.line;
      return { seq, values: new Map(), error: 'InvalidSecretsFile', message: `${this.#path}${pos ? `:${pos}` : ''}: not valid YAML/JSON` };
    }
    if (doc === null || doc === undefined) doc = {};
    if (typeof doc !== 'object' || Array.isArray(doc)) {
      return { seq, values: new Map(), error: 'InvalidSecretsFile', message: `${this.#path}: must be a map of secret id -> string or object` };
    }
    const values = new Map<string, SecretValue>();
    for (const [id, v] of Object.entries(doc as Record<string, unknown>)) {
      const secretString = typeof v === 'string' ? v : JSON.stringify(v);
      const versionId = createHash('sha256').update(secretString).digest('hex').slice(0, 32);
      values.set(id, {
        arn: `arn:local:file:${id}`,
        name: id,
        versionId,
        versionStages: ['AWSCURRENT'],
        createdDate: mtime,
        secretString,
      });
    }
    return { seq, values };
  }

  async #get(spec: SecretSpec): Promise<SecretValue> {
    return this.#pick(await this.#load(), spec);
  }

  /** One secret's value in a snapshot. Throws SourceError. */
  #pick(snap: Snapshot, spec: SecretSpec): SecretValue {
    if (snap.error) {
      throw new SourceError({ secret: spec.name, secretId: spec.id, code: snap.error, transient: true, message: snap.message ?? snap.error });
    }
    const v = snap.values.get(spec.id);
    if (!v) {
      throw new SourceError({
        secret: spec.name,
        secretId: spec.id,
        code: 'ResourceNotFoundException',
        transient: false,
        message: `no entry "${spec.id}" in ${this.#path}`,
      });
    }
    if (spec.versionId && spec.versionId !== v.versionId) {
      throw new SourceError({
        secret: spec.name,
        secretId: spec.id,
        code: 'ResourceNotFoundException',
        transient: false,
        message: `the file source holds only the current value; versionId ${spec.versionId} is not it`,
      });
    }
    return v;
  }

  fetch(spec: SecretSpec): Promise<SecretValue> {
    return this.#get(spec);
  }

  async describe(spec: SecretSpec): Promise<SecretMetadata> {
    const v = await this.#get(spec);
    return { arn: v.arn, name: v.name, versionIdForStage: v.versionId, rotationEnabled: false, deleted: false };
  }

  async fetchAll(specs: readonly SecretSpec[]): Promise<Map<string, FetchResult>> {
    return new Map((await this.readSnapshot(specs)).results);
  }

  async readSnapshot(specs: readonly SecretSpec[]): Promise<SourceSnapshot> {
    const snap = await this.#load();
    const results = new Map<string, FetchResult>();
    for (const spec of specs) {
      try {
        results.set(spec.name, this.#pick(snap, spec));
      } catch (err) {
        results.set(spec.name, err as SourceError);
      }
    }
    return { seq: snap.seq, results };
  }

  /** Forget the cached snapshot: the next read sees the file as it is now. */
  invalidate(): void {
    this.#snapshot = undefined;
  }

  watch(onChange: () => void): () => Promise<void> {
    let closed = false;
    const watcherP = import('chokidar').then(({ watch }) => {
      const w = watch(this.#path, { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 50, pollInterval: 20 } });
      w.on('all', () => {
        this.invalidate();
        this.#log.info({ path: this.#path }, 'secrets file changed');
        onChange();
      });
      w.on('error', (err) => this.#log.warn({ err: String(err) }, 'watching the secrets file failed'));
      if (closed) void w.close();
      return w;
    });
    return async () => {
      closed = true;
      const w = await watcherP;
      await w.close();
    };
  }

  close(): void {
    this.#snapshot = undefined;
  }
}
