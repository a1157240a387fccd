// `convert eso`: External Secrets Operator manifests (SecretStore,
// ClusterSecretStore, ExternalSecret; external-secrets.io/v1beta1 and v1) ->
// one agent config, with ESO's semantics (docs/eso.md has every rule and its
// ESO source). Pure: text in, config object and diagnostics out; the CLI
// (cli/convert.ts) reads the files and prints.
//
// With `envFiles`, each target also gets an env file (files[].envFile of its
// directory) for Kubernetes fileKeyRef (inject --from-eso).
//
// Diagnostics are of three severities: `note` (something to do beside the
// config, e.g. the IRSA trust policy, the agent's IAM policy), `unconverted` (the config is usable but
// this part is missing: exit 1) and `fatal` (an input is unusable: exit 2).
// Each names the file and line.
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import { MAX_DURATION_MS, MAX_DURATION_TEXT, parseDuration } from '../config/duration.ts';
import { FILE_PATH_PATTERN, SECRET_NAME_PATTERN } from '../config/schema.ts';
import { translateTemplate, type KeyExpr } from './template.ts';
import { envTemplateProblem } from '../render/envfile.ts';

export interface EsoInput {
  /** As the user named it ("-" for stdin). */
  readonly file: string;
  readonly text: string;
}

export interface Diagnostic {
  readonly severity: 'note' | 'unconverted' | 'fatal';
  readonly file: string;
  readonly line?: number;
  readonly message: string;
}

export interface Conversion {
  /** The agent config (undefined when a fatal diagnostic was found). */
  readonly config?: Record<string, unknown>;
  readonly diagnostics: readonly Diagnostic[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

const API_VERSIONS = new Set(['external-secrets.io/v1beta1', 'external-secrets.io/v1']);
const KINDS = new Set(['SecretStore', 'ClusterSecretStore', 'ExternalSecret']);
/** ESO's CRD default for spec.refreshInterval. */
const ESO_DEFAULT_REFRESH = '1h';

interface Located {
  readonly file: string;
  readonly value: Obj;
  readonly doc: Document;
  readonly lines: LineCounter;
}

interface Store extends Located {
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
}

export interface ConvertOptions {
  readonly outputDir?: string;
  /**
   * Also write each target's env file (files[].envFile of the target's
   * directory, at envFilePath(target)), for env[].valueFrom.fileKeyRef
   * (inject --from-eso). `envSyntax`: the kubelet's (docs/env-files.md).
   */
  readonly envFiles?: { readonly path: (target: string) => string; readonly envSyntax?: 'quoted' | 'plain' };
}

export function convertEso(inputs: readonly EsoInput[], opts: ConvertOptions = {}): Conversion {
  const diagnostics: Diagnostic[] = [];
  const lineOf = (l: Located, path: readonly (string | number)[]): number | undefined => {
    for (let p = path; ; p = p.slice(0, -1)) {
      const node = l.doc.getIn(p, true) as { range?: [number, number, number] } | undefined;
      if (node?.range) return l.lines.linePos(node.range[0]).line;
      if (p.length === 0) return undefined;
    }
  };
  const say = (severity: Diagnostic['severity'], l: Located | { file: string }, path: readonly (string | number)[] | number | undefined, message: string): void => {
    const line = typeof path === 'number' ? path : path === undefined || !('doc' in l) ? undefined : lineOf(l, path);
    diagnostics.push({ severity, file: l.file, ...(line === undefined ? {} : { line }), message });
  };

  // --- read every document -------------------------------------------------------
  const stores: Store[] = [];
  const externalSecrets: Located[] = [];
  for (const input of inputs) {
    const lines = new LineCounter();
    const docs = parseAllDocuments(input.text, { lineCounter: lines, prettyErrors: false });
    const list = Array.isArray(docs) ? docs : [];
    for (const doc of list) {
      const err = doc.errors[0];
      if (err) {
        say('fatal', { file: input.file }, lines.linePos(err.pos[0]).line, `YAML syntax error: ${err.message.split('\n')[0]}; fix the manifest`);
        continue;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) continue;
      const located: Located = { file: input.file, value: isObj(value) ? value : {}, doc, lines };
      const kind = str(located.value['kind']);
      const api = str(located.value['apiVersion']);
      if (!isObj(value) || !kind || !KINDS.has(kind) || !api || !API_VERSIONS.has(api)) {
        say('fatal', located, ['kind'], `${kind ?? 'a document without kind'}${api ? ` (${api})` : ''} is not an ESO SecretStore, ClusterSecretStore or ExternalSecret of external-secrets.io/v1beta1 or v1; give only ESO manifests`);
        continue;
      }
      const meta = isObj(value['metadata']) ? value['metadata'] : {};
      if (kind === 'ExternalSecret') externalSecrets.push(located);
      else stores.push({ ...located, kind, name: str(meta['name']) ?? '', ...(str(meta['namespace']) ? { namespace: str(meta['namespace'])! } : {}) });
    }
  }
  if (diagnostics.some((d) => d.severity === 'fatal')) return { diagnostics };
  if (externalSecrets.length === 0) {
    say('fatal', { file: inputs[0]?.file ?? '-' }, undefined, 'no ExternalSecret in the input: there is nothing to convert; give the ExternalSecret manifests too');
    return { diagnostics };
  }

  // --- stores -> source ------------------------------------------------------------
  const storeOf = (es: Located): Store | undefined => {
    const spec = isObj(es.value['spec']) ? es.value['spec'] : {};
    const ref = isObj(spec['secretStoreRef']) ? spec['secretStoreRef'] : {};
    const kind = str(ref['kind']) ?? 'SecretStore';
    const name = str(ref['name']) ?? '';
    const ns = isObj(es.value['metadata']) ? str(es.value['metadata']['namespace']) : undefined;
    const store = stores.find((s) => s.kind === kind && s.name === name && (kind === 'ClusterSecretStore' || s.namespace === undefined || ns === undefined || s.namespace === ns));
    if (!store) say('fatal', es, ['spec', 'secretStoreRef'], `the ${kind} "${name}" it names is not in the input; give its manifest too`);
    return store;
  };
  const used = new Map<Located, Store>();
  for (const es of externalSecrets) {
    const s = storeOf(es);
    if (s) used.set(es, s);
  }
  if (diagnostics.some((d) => d.severity === 'fatal')) return { diagnostics };

  interface Aws { service: string; region?: string; role?: string; prefix: string }
  const awsOf = new Map<Store, Aws | undefined>();
  for (const store of new Set(used.values())) {
    const provider = isObj(store.value['spec']) && isObj(store.value['spec']['provider']) ? store.value['spec']['provider'] : {};
    const aws = provider['aws'];
    if (!isObj(aws)) {
      say('unconverted', store, ['spec', 'provider'], `${store.kind} "${store.name}" is not an AWS store (provider ${Object.keys(provider).join(', ') || 'missing'}): the agent reads AWS Secrets Manager and Parameter Store only; its ExternalSecrets are left out`);
      awsOf.set(store, undefined);
      continue;
    }
    const service = str(aws['service']) ?? 'SecretsManager';
    if (service !== 'SecretsManager' && service !== 'ParameterStore') {
      say('unconverted', store, ['spec', 'provider', 'aws', 'service'], `service ${service} is not supported (SecretsManager or ParameterStore); its ExternalSecrets are left out`);
      awsOf.set(store, undefined);
      continue;
    }
    for (const k of ['additionalRoles', 'externalID', 'sessionTags', 'transitiveTagKeys'] as const) {
      if (aws[k] !== undefined) say('unconverted', store, ['spec', 'provider', 'aws', k], `${k} is not supported: the agent assumes at most one role (assumeRoleArn), with no external id or session tags`);
    }
    const auth = isObj(aws['auth']) ? aws['auth'] : undefined;
    if (auth && isObj(auth['secretRef'])) {
      say('unconverted', store, ['spec', 'provider', 'aws', 'auth', 'secretRef'], 'auth.secretRef (static access keys in a Kubernetes Secret) is not supported: the agent runs as the pod and uses its identity (IRSA or EKS Pod Identity), so no key is stored anywhere; give the pod\'s ServiceAccount an IAM role instead (docs/eso.md)');
    }
    const jwt = auth && isObj(auth['jwt']) && isObj(auth['jwt']['serviceAccountRef']) ? auth['jwt']['serviceAccountRef'] : undefined;
    const region = str(aws['region']);
    const role = str(aws['role']);
    const ns = store.namespace ?? 'NAMESPACE';
    const where = jwt ? `the ServiceAccount "${str(jwt['name']) ?? ''}" named by auth.jwt.serviceAccountRef` : 'the ESO controller\'s own ServiceAccount (the store has no auth)';
    say(
      'note',
      store,
      ['spec', 'provider', 'aws', ...(jwt ? ['auth', 'jwt'] : [])],
      [
        `ESO read these secrets as ${where}; the agent reads them as the pod itself, so the pod's own ServiceAccount needs that IAM role:`,
        `  metadata.annotations: { eks.amazonaws.com/role-arn: arn:aws:iam::ACCOUNT_ID:role/ROLE }   (the role ${where} is annotated with)`,
        `  and the role's trust policy must trust the cluster's OIDC provider for that ServiceAccount (not the "eks.amazonaws.com" service, which IRSA never uses):`,
        `  {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::ACCOUNT_ID:oidc-provider/oidc.eks.${region ?? 'REGION'}.amazonaws.com/id/CLUSTER_ID"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.eks.${region ?? 'REGION'}.amazonaws.com/id/CLUSTER_ID:sub":"system:serviceaccount:${ns}:APP_SERVICE_ACCOUNT","oidc.eks.${region ?? 'REGION'}.amazonaws.com/id/CLUSTER_ID:aud":"sts.amazonaws.com"}}}]}`,
        '  (aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer gives the OIDC provider URL)',
      ].join('\n'),
    );
    awsOf.set(store, { service, ...(region ? { region } : {}), ...(role ? { role } : {}), prefix: str(aws['prefix']) ?? '' });
  }
  const awsStores = [...awsOf.values()].filter((a): a is Aws => a !== undefined);
  const source: Obj = { type: 'aws' };
  const first = awsStores[0];
  if (first?.region) source['region'] = first.region;
  if (first?.role) source['assumeRoleArn'] = first.role;
  if (awsStores.some((a) => a.region !== first?.region || a.role !== first?.role)) {
    const [, other] = [...awsOf.entries()].find(([, a]) => a && (a.region !== first?.region || a.role !== first?.role)) ?? [];
    const store = [...awsOf.entries()].find(([, a]) => a === other)?.[0];
    if (store) say('unconverted', store, ['spec', 'provider', 'aws'], `the stores differ in region or role, and one agent config has one source: this config uses region ${first?.region ?? '(default)'} and role ${first?.role ?? '(none)'}; convert the ExternalSecrets of this store separately, for an agent of their own`);
  }

  // --- ExternalSecrets -> secrets and files -----------------------------------------
  const secrets = new Map<string, Obj>();
  const secretByKey = new Map<string, string>();
  const intervals = new Map<string, string[]>();
  const files: Obj[] = [];
  const targets = new Map<string, Located>();
  const targetOf = (es: Located): string => {
    const spec = isObj(es.value['spec']) ? es.value['spec'] : {};
    const target = isObj(spec['target']) ? spec['target'] : {};
    return str(target['name']) ?? (isObj(es.value['metadata']) ? str(es.value['metadata']['name']) : undefined) ?? 'secret';
  };
  for (const es of externalSecrets) targets.set(targetOf(es), es);
  const several = targets.size > 1;
  if (several) {
    say(
      'note',
      externalSecrets[1]!,
      ['spec', 'target'],
      `the ExternalSecrets have ${targets.size} targets (${[...targets.keys()].join(', ')}): each is written as a root of its own, <outputDir>/<target>/<key> (targets: in the config, each with its own atomic generation). For each target, mount the agent's volume at the path the app mounted that Secret with subPath: <target> (e.g. subPath: ${[...targets.keys()][0]!}): a subPath of a target directory sees every rotation (a subPath of one file never does)`,
    );
  }

  const localName = (hint: string): string => {
    let base = hint.replace(/^arn:aws[-a-z]*:secretsmanager:[^:]*:\d+:secret:/, '').replace(/-[A-Za-z0-9]{6}$/, '').split('/').filter(Boolean).pop() ?? 'secret';
    base = base.replace(/[^A-Za-z0-9_-]/g, '_').replace(/^[^A-Za-z_]+/, '').slice(0, 56) || 'secret';
    let name = base;
    for (let n = 2; secrets.has(name); n++) name = `${base}_${n}`;
    if (!new RegExp(SECRET_NAME_PATTERN).test(name)) name = `secret_${secrets.size + 1}`;
    return name;
  };

  for (const es of externalSecrets) {
    const store = used.get(es)!;
    const aws = awsOf.get(store);
    if (!aws) continue;
    const spec = isObj(es.value['spec']) ? es.value['spec'] : {};
    const target = targetOf(es);
    const prefix = several ? `${target}/` : '';
    const interval = refreshOf(es, spec, say);

    /** The local name of one (key, version) of this store; declared once. */
    const secretFor = (ref: Obj, at: (string | number)[]): string | undefined => {
      const key = str(ref['key']);
      if (!key) {
        say('unconverted', es, at, 'remoteRef.key is missing; skipped');
        return undefined;
      }
      if (ref['metadataPolicy'] === 'Fetch') {
        say('unconverted', es, [...at, 'metadataPolicy'], 'metadataPolicy: Fetch (the secret\'s tags) is not supported: the agent reads values only; skipped');
        return undefined;
      }
      const id = `${aws.prefix}${key}`;
      const version = str(ref['version']);
      const dedupe = `${aws.service}\0${id}\0${version ?? ''}`;
      let name = secretByKey.get(dedupe);
      if (name === undefined) {
        name = localName(id);
        const s: Obj = {};
        if (aws.service === 'ParameterStore') {
          s['parameter'] = id;
          if (version !== undefined) s[/^\d+$/.test(version) ? 'version' : 'label'] = /^\d+$/.test(version) ? Number(version) : version;
        } else {
          s['id'] = id;
          if (version?.startsWith('uuid/')) s['versionId'] = version.slice(5);
          else if (version !== undefined && version !== 'AWSCURRENT') s['versionStage'] = version;
        }
        secrets.set(name, s);
        secretByKey.set(dedupe, name);
      }
      if (!('versionId' in secrets.get(name)!)) intervals.set(name, [...(intervals.get(name) ?? []), interval]);
      return name;
    };
    const decodeOf = (ref: Obj, at: (string | number)[]): Obj => {
      const d = str(ref['decodingStrategy']);
      if (d === undefined || d === 'None') return {};
      const map: Record<string, string> = { Base64: 'base64', Base64URL: 'base64url', Auto: 'auto' };
      if (!map[d]) {
        say('unconverted', es, [...at, 'decodingStrategy'], `decodingStrategy ${d} is not one of None, Base64, Base64URL, Auto; written undecoded`);
        return {};
      }
      return { decode: map[d] };
    };
    const convertible = (ref: Obj, at: (string | number)[]): boolean => {
      if (ref['conversionStrategy'] !== undefined && ref['conversionStrategy'] !== 'Default') {
        say('unconverted', es, [...at, 'conversionStrategy'], `conversionStrategy ${JSON.stringify(ref['conversionStrategy'])} is not supported (keys are used as they are); skipped`);
        return false;
      }
      const prop = str(ref['property']);
      if (prop !== undefined && /[*?#@|!=<>%\\]/.test(prop)) {
        say('unconverted', es, [...at, 'property'], `property "${prop}" uses gjson syntax beyond a dotted path (wildcards, #, @, |, queries): not supported; skipped`);
        return false;
      }
      return true;
    };

    // What the template sees of each key, and the explicit files.
    const keyExprs = new Map<string, { expr: string; wholeSecret?: string }>();
    const dataFiles: Obj[] = [];
    const extracts: { name: string; ref: Obj }[] = [];
    const dataFrom = Array.isArray(spec['dataFrom']) ? spec['dataFrom'] : [];
    dataFrom.forEach((entry: unknown, i) => {
      const at = ['spec', 'dataFrom', i];
      if (!isObj(entry)) return;
      if (entry['find'] !== undefined) {
        say('unconverted', es, [...at, 'find'], 'dataFrom.find (secrets by name regexp, tags or path) is not supported: the agent reads the secrets its config names, so the set of files cannot change with what exists in the account; list the secrets you need with dataFrom.extract or data');
        return;
      }
      if (entry['sourceRef'] !== undefined) {
        say('unconverted', es, [...at, 'sourceRef'], 'dataFrom.sourceRef (a generator or another store) is not supported; skipped');
        return;
      }
      if (entry['rewrite'] !== undefined) {
        say('unconverted', es, [...at, 'rewrite'], 'dataFrom.rewrite (renaming keys) is not supported; skipped');
        return;
      }
      const ref = isObj(entry['extract']) ? entry['extract'] : undefined;
      if (!ref || !convertible(ref, [...at, 'extract'])) return;
      const name = secretFor(ref, [...at, 'extract']);
      if (!name) return;
      const prop = str(ref['property']);
      extracts.push({ name, ref });
      files.push({ dir: several ? target : '.', secret: name, eachKey: true, ...(prop ? { key: prop } : {}), ...decodeOf(ref, [...at, 'extract']) });
    });
    const data = Array.isArray(spec['data']) ? spec['data'] : [];
    data.forEach((entry: unknown, i) => {
      const at = ['spec', 'data', i];
      if (!isObj(entry)) return;
      const secretKey = str(entry['secretKey']);
      const ref = isObj(entry['remoteRef']) ? entry['remoteRef'] : undefined;
      if (entry['sourceRef'] !== undefined) {
        say('unconverted', es, [...at, 'sourceRef'], 'data.sourceRef (a generator or another store) is not supported; skipped');
        return;
      }
      if (!secretKey || !ref || !convertible(ref, [...at, 'remoteRef'])) return;
      const path = `${prefix}${secretKey}`;
      if (!new RegExp(FILE_PATH_PATTERN).test(path) || secretKey.startsWith('.')) {
        say('unconverted', es, [...at, 'secretKey'], `secretKey "${secretKey}" cannot be a file name here (names starting with "." are reserved, and "/" makes a directory); skipped: rename it and the path the app reads`);
        return;
      }
      const name = secretFor(ref, [...at, 'remoteRef']);
      if (!name) return;
      const prop = str(ref['property']);
      const decode = decodeOf(ref, [...at, 'remoteRef']);
      dataFiles.push({ path, secret: name, ...(prop ? { key: prop } : {}), ...decode });
      const expr = prop === undefined ? `raw.${name}` : `secrets.${name}${prop.split('.').map((s) => `[${JSON.stringify(s)}]`).join('')}`;
      if (decode['decode'] === undefined) keyExprs.set(secretKey, { expr, ...(prop === undefined ? { wholeSecret: `secrets.${name}` } : {}) });
      else if (decode['decode'] === 'base64') keyExprs.set(secretKey, { expr: `${expr} | base64_decode` });
    });

    // target.template
    const target_ = isObj(spec['target']) ? spec['target'] : {};
    const template = isObj(target_['template']) ? target_['template'] : undefined;
    const tplData = template && isObj(template['data']) ? template['data'] : undefined;
    if (template?.['templateFrom'] !== undefined) {
      say('unconverted', es, ['spec', 'target', 'template', 'templateFrom'], 'templateFrom (templates from a ConfigMap or Secret) is not converted: copy each template into a files[].template (Liquid) by hand');
    }
    if (template && str(template['engineVersion']) === 'v1') {
      say('unconverted', es, ['spec', 'target', 'template', 'engineVersion'], 'engineVersion v1 templates are not converted (only v2); skipped');
    } else if (tplData) {
      const merge = template?.['mergePolicy'] === 'Merge';
      const keyExpr: KeyExpr = (key) => {
        const fromData = keyExprs.get(key);
        if (fromData) return fromData;
        if (data.some((d) => isObj(d) && d['secretKey'] === key)) return undefined;
        if (extracts.length !== 1) return undefined;
        const { name, ref } = extracts[0]!;
        if (ref['decodingStrategy'] !== undefined && ref['decodingStrategy'] !== 'None') return undefined;
        const prop = str(ref['property']);
        return { expr: `secrets.${name}${prop ? prop.split('.').map((s) => `[${JSON.stringify(s)}]`).join('') : ''}[${JSON.stringify(key)}]` };
      };
      const tplFiles: Obj[] = [];
      for (const [k, v] of Object.entries(tplData)) {
        const at = ['spec', 'target', 'template', 'data', k];
        if (typeof v !== 'string') continue;
        const result = translateTemplate(v, keyExpr);
        if (!result.ok) {
          const node = es.doc.getIn(at, true) as { range?: [number, number, number]; type?: string } | undefined;
          const base = lineOf(es, at) ?? 0;
          const block = node?.type === 'BLOCK_LITERAL' || node?.type === 'BLOCK_FOLDED' ? 1 : 0;
          say('unconverted', es, base + block + result.row - 1, `template for key "${k}": ${result.why}; this key is not written`);
          continue;
        }
        const envProblem = opts.envFiles ? envTemplateProblem(result.liquid, opts.envFiles.envSyntax ?? 'quoted') : undefined;
        if (envProblem) {
          say('unconverted', es, at, `template for key "${k}" ${envProblem}, so the key cannot be an environment variable read from the env file (docs/env-files.md); this key is not written`);
          continue;
        }
        tplFiles.push({ path: `${prefix}${k}`, template: result.liquid });
      }
      if (!merge) {
        // mergePolicy Replace (the default): only the template's keys are in the Secret.
        files.splice(files.length - extracts.length, extracts.length);
        dataFiles.length = 0;
      }
      const taken = new Set(tplFiles.map((f) => f['path']));
      files.push(...dataFiles.filter((f) => !taken.has(f['path'])), ...tplFiles);
      continue;
    }
    files.push(...dataFiles);
  }

  // --- refresh --------------------------------------------------------------------
  const chosen = new Map<string, string>();
  for (const [name, list] of intervals) {
    const finite = list.filter((i) => i !== 'never');
    chosen.set(name, finite.length === 0 ? 'never' : finite.reduce((a, b) => ((parseDuration(a) ?? 0) <= (parseDuration(b) ?? 0) ? a : b)));
  }
  const distinct = new Set(chosen.values());
  const refresh: Obj = {};
  if (distinct.size === 1 && !distinct.has('never')) refresh['interval'] = [...distinct][0];
  else for (const [name, i] of chosen) secrets.get(name)!['refreshInterval'] = i;

  if (files.length === 0) {
    say('fatal', externalSecrets[0]!, ['spec'], 'nothing could be converted (every part is listed above), so there is no config to print');
    return { diagnostics };
  }
  if (opts.outputDir === undefined) {
    say('note', externalSecrets[0]!, ['spec', 'target'], 'outputDir is /etc/app-secrets: set --output-dir to the mountPath the app used for the Secret volume, so it reads the same paths');
  }
  say('note', externalSecrets[0]!, ['spec'], iamPolicy(secrets, source));
  if (opts.envFiles) {
    // One env file per target: its keys are the target's files (dir), so each env var gets ESO's bytes.
    for (const target of targets.keys()) {
      files.push({ path: opts.envFiles.path(target), envFile: several ? target : '.', ...(opts.envFiles.envSyntax ? { envSyntax: opts.envFiles.envSyntax } : {}) });
    }
  }
  const config: Obj = {
    source,
    outputDir: opts.outputDir ?? '/etc/app-secrets',
    // Several targets: one writer root each (output/targets.ts), in the order the ExternalSecrets came.
    ...(several ? { targets: [...targets.keys()] } : {}),
    ...(Object.keys(refresh).length > 0 ? { refresh } : {}),
    secrets: Object.fromEntries(secrets),
    files,
  };
  return { config, diagnostics };
}

/** An ExternalSecret's refresh, as an agent duration or "never". */
function refreshOf(
  es: Located,
  spec: Obj,
  say: (severity: Diagnostic['severity'], l: Located, path: (string | number)[], message: string) => void,
): string {
  const policy = str(spec['refreshPolicy']);
  if (policy === 'CreatedOnce') return 'never';
  if (policy === 'OnChange') {
    say('note', es, ['spec', 'refreshPolicy'], 'refreshPolicy OnChange (ESO refreshes only when the ExternalSecret changes): converted to refreshInterval: never (fetched once, at start)');
    return 'never';
  }
  const raw = spec['refreshInterval'];
  const text = raw === undefined ? ESO_DEFAULT_REFRESH : typeof raw === 'string' ? raw : JSON.stringify(raw);
  if (/^0+(?:\.0+)?(?:ns|us|µs|ms|s|m|h)?$/.test(text)) return 'never';
  // Go durations: "1h0m0s" reads as it is; units below ms do not.
  const go = text.replace(/(^|[^\d.])0(?:ns|us|µs)/g, '$1');
  const ms = parseDuration(go);
  if (ms === undefined || ms < 10) {
    say('unconverted', es, ['spec', 'refreshInterval'], `refreshInterval ${text} is not a duration the agent takes (e.g. 30s, 5m, 1h); using ${ESO_DEFAULT_REFRESH}`);
    return ESO_DEFAULT_REFRESH;
  }
  if (ms > MAX_DURATION_MS) {
    say('unconverted', es, ['spec', 'refreshInterval'], `refreshInterval ${text} is longer than the agent's longest interval; using ${MAX_DURATION_TEXT}`);
    return MAX_DURATION_TEXT;
  }
  return go;
}

/**
 * The IAM policy the agent's role needs for these secrets, beside what ESO's
 * role had (GetSecretValue, or ssm:GetParameter*): the agent also checks for
 * new versions with DescribeSecret (ListSecrets with refresh.batchChecks), and
 * decrypting with a customer-managed KMS key needs kms:Decrypt through the
 * service (docs/aws.md; k8s-examples/iam/iam-policy.json is the full form).
 */
function iamPolicy(secrets: ReadonlyMap<string, Obj>, source: Obj): string {
  const region = str(source['region']) ?? 'REGION';
  const arn = (service: string, rest: string): string => `arn:aws:${service}:${region}:ACCOUNT_ID:${rest}`;
  const sm: string[] = [];
  const ssm: string[] = [];
  for (const s of secrets.values()) {
    const id = str(s['id']);
    const parameter = str(s['parameter']);
    if (id !== undefined) sm.push(id.startsWith('arn:') ? id : arn('secretsmanager', `secret:${id}-??????`));
    else if (parameter !== undefined) ssm.push(parameter.startsWith('arn:') ? parameter : arn('ssm', `parameter/${parameter.replace(/^\//, '')}`));
  }
  const statements: Obj[] = [];
  if (sm.length > 0) statements.push({ Sid: 'ReadAndCheckTheseSecrets', Effect: 'Allow', Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Resource: [...new Set(sm)] });
  if (ssm.length > 0) statements.push({ Sid: 'ReadTheseParameters', Effect: 'Allow', Action: ['ssm:GetParameters', 'ssm:GetParametersByPath'], Resource: [...new Set(ssm)] });
  const via = [...(sm.length > 0 ? ['secretsmanager'] : []), ...(ssm.length > 0 ? ['ssm'] : [])];
  return [
    'the agent\'s IAM policy (ESO\'s role needed secretsmanager:GetSecretValue or ssm:GetParameter*; the agent also checks for new versions with secretsmanager:DescribeSecret, which reads no value):',
    `  ${JSON.stringify({ Version: '2012-10-17', Statement: statements })}`,
    '  with refresh.batchChecks also {"Effect":"Allow","Action":"secretsmanager:ListSecrets","Resource":"*"} (it has no resource type);',
    `  for secrets encrypted with a customer-managed KMS key also {"Effect":"Allow","Action":"kms:Decrypt","Resource":"${arn('kms', 'key/KEY_ID')}","Condition":{"StringEquals":{"kms:ViaService":[${via.map((v) => `"${v}.${region}.amazonaws.com"`).join(',')}]}}} (docs/aws.md; k8s-examples/iam/iam-policy.json)`,
  ].join('\n');
}
