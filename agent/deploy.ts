// What a deployment of the agent looks like, in one place: the released image's
// name and the agent container's resources. `inject` (and the admission webhook,
// which applies the same mutation) take them from here; the k8s-examples and the
// kustomize component carry the same values, and test/artifacts checks they agree.
import { VERSION } from './version.ts';

/** Where releases are pushed (the release workflow pushes here; docs name it). */
export const IMAGE_REPOSITORY = 'ghcr.io/example/secrets-agent';

/** This version's released image. */
export const IMAGE = `${IMAGE_REPOSITORY}:${VERSION}`;

/** The agent container's requests and limits (docs/performance.md says where they come from). */
export const AGENT_RESOURCES = {
  requests: { cpu: '20m', memory: '140Mi' },
  limits: { memory: '256Mi' },
} as const;

/**
 * The agent's port when its config says none (server.listen's default, config/schema.ts) and
 * the directory the example configs write to: inject's --from-eso config uses it, and the
 * webhook, which cannot read the config, assumes both unless annotations say otherwise.
 */
export const AGENT_PORT = 9102;
export const OUTPUT_DIR = '/run/secrets/app';
