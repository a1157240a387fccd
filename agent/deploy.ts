// What a deployment of the agent looks like, in one place: the released image's
// name and the agent container's resources. `inject` (and the admission webhook,
// which applies the same mutation) take them from here; the k8s-examples and the
// kustomize component carry the same values, and test/artifacts checks they agree.
import { VERSION } from './version.ts';

/** Where releases are pushed (the release workflow pushes here; docs name it). */
export const IMAGE_REPOSITORY = 'ghcr.io/example/secrets-agent';

/** This version's released image. */
export const IMAGE = `${IMAGE_REPOSITORY}:${VERSION}`;

/**
 * The agent container's requests and limits, from `npm run bench:image` (the
 * image's sidecar in its own memory cgroup; docs/performance.md, Resources):
 * memory request = the largest working set measured (45 MiB, 1,000 secrets)
 * x 1.25, rounded up to 8 Mi; limit = the largest peak (152 MiB: a cold start,
 * the node binary's page cache included) x 1.5, rounded up to 32 Mi. CPU: no
 * limit (idle between checks, CPU at start-up only).
 */
export const AGENT_RESOURCES = {
  requests: { cpu: '20m', memory: '64Mi' },
  limits: { memory: '256Mi' },
} as const;

/**
 * The agent's port when its config says none (server.listen's default, config/schema.ts) and
 * the directory the example configs write to: inject's --from-eso config uses it, and the
 * webhook, which cannot read the config, assumes both unless annotations say otherwise.
 */
export const AGENT_PORT = 9102;
export const OUTPUT_DIR = '/run/secrets/app';
