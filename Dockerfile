# secrets-agent container image: one bundled file run by Node 24 on distroless.
#
#   docker build -t secrets-agent:0.1.0 .
#
# `npm run test:image` (test/image/image.test.ts) builds this very file with
# buildah, from local stand-ins of the two base images (no registry can be
# reached where this project is developed; docs/image.md says what a stand-in
# is), and runs `init` and `run` from the result as UID 65532 with a read-only
# root and no capabilities. In `npm test`, test/artifacts/dockerfile.test.ts
# checks it as a document (pins, non-root USER, what is copied, no secrets in
# ENV/ARG), replays the code-cache stage with the same node, flags and UIDs,
# and replays the build stage's `npm run build` on only the files it copies.
#
# Base images are pinned by version tag AND digest. The digests are the ones
# published for these tags when this file was written; to move to a newer
# patch release, change the tag and take its digest from
# `docker buildx imagetools inspect <image>:<tag>`.
#
# Both base images are build arguments whose defaults are those pins: a build
# from a mirror (or `npm run test:image`, which builds this file with local
# stand-ins because no registry can be reached where it runs; docs/image.md)
# passes --build-arg BUILD_IMAGE=... --build-arg RUNTIME_IMAGE=... and changes
# nothing else.
ARG BUILD_IMAGE=node:24.21.0-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot@sha256:14d42e2511532589a7c7e01a753667a74fcc96266e137e8125006b87b0c32d0a

# --- build: the official Node image, the same Node version as package-lock.json's `node`
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Dependencies first, so this layer is reused while only the sources change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.ts scripts/code-cache-warmup.ts scripts/
COPY agent/ agent/
RUN npm run build

# --- code cache: V8's compiled code for the agent, made by the runtime image's
# own node (agent/loader.ts). The cache is keyed by the code's hash, the node
# version and V8's flags, so it is made here, FROM the same image digest as the
# runtime stage, with exactly the node flags the containers use, by a warm-up
# that runs one real `init` in the same process against a stand-in for STS and
# Secrets Manager on loopback (no network; scripts/code-cache-warmup.ts): the
# cache then holds every function an init compiles, not only the top level
# (Node's own compile cache, NODE_COMPILE_CACHE, held only that). One file per
# command line (test/artifacts/dockerfile.test.ts checks the stage and replays it):
# - the ENTRYPOINT's, for `run` (the sidecar);
# - the init containers' (k8s-examples set `command` to the ENTRYPOINT without
#   --lite-mode: any V8 code-generation flag makes Node recompile its own
#   built-in modules, ~10 ms that a one-shot init does not need to pay; see the
#   ENTRYPOINT below).
# Any other flags (NODE_OPTIONS) or UID: the cache is skipped or used; the output is the same.
# Measured by `npm run bench -- --only=init` (docs/performance.md, Init).
FROM ${RUNTIME_IMAGE} AS code-cache
COPY --from=build /src/dist/secrets-agent.mjs /app/secrets-agent.mjs
COPY --from=build /src/dist/code-cache-warmup.mjs /tmp/code-cache-warmup.mjs
USER 65532:65532
RUN ["/nodejs/bin/node", "--disable-sigusr1", "--lite-mode", "--max-semi-space-size=1", "/tmp/code-cache-warmup.mjs", "/app/secrets-agent.mjs", "/tmp/code-cache"]
RUN ["/nodejs/bin/node", "--disable-sigusr1", "--max-semi-space-size=1", "/tmp/code-cache-warmup.mjs", "/app/secrets-agent.mjs", "/tmp/code-cache"]

# --- runtime: distroless Node 24 (no shell, no package manager), user nonroot.
# Distroless publishes no per-patch Node tags: the image name carries the major
# version (nodejs24) and the digest pins the exact build. nodejs24-debian13 is
# a drop-in alternative with the same layout.
FROM ${RUNTIME_IMAGE}

LABEL org.opencontainers.image.title="secrets-agent" \
      org.opencontainers.image.description="AWS Secrets Manager secrets as files in Kubernetes pods (init container and sidecar)" \
      org.opencontainers.image.licenses="Apache-2.0"

# The whole program is this one file; node_modules is not needed at run time.
COPY --from=build /src/dist/secrets-agent.mjs /app/secrets-agent.mjs
# The licenses: the agent's own (Apache-2.0) and, for the third-party code the
# bundle includes, every package's name, version, license and notices, made by
# the build from the bundle's own inputs (scripts/build.ts).
COPY LICENSE /app/LICENSE
COPY --from=build /src/dist/THIRD-PARTY-NOTICES /app/THIRD-PARTY-NOTICES
# Its code cache, where the loader looks by default (code-cache/ next to the
# file). Read-only at run time is fine: it is only read.
COPY --from=code-cache --chown=65532:65532 /tmp/code-cache /app/code-cache
# Ready-made templates, referenced from a config as
# /etc/secrets-agent/templates/<name>.liquid. Mount your ConfigMap elsewhere
# (the examples use /etc/secrets-agent/config) so it does not hide them.
COPY templates/*.liquid /etc/secrets-agent/templates/

# 65532 = distroless "nonroot". Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532

# Node flags. --disable-sigusr1: SIGUSR1 must never open Node's inspector (code
#   execution inside the process that holds the pod's AWS credentials, for any
#   container of a pod with shareProcessNamespace). With it Node keeps SIGUSR1
#   blocked from its start; the agent's own handler (README, Signals) covers
#   other command lines. A Node flag, not a V8 one: no effect on the compile
#   cache's key or on how Node loads its built-in modules. Every command line
#   that runs the agent carries it (test/e2e/signals.test.ts runs each one).
# The others, measured by `npm run bench` (README, Performance):
# --lite-mode: no optimizing compilers. `run` with 10 secrets after 1,000
#   refresh cycles: RSS 267 -> 75 MB (1,000 secrets: 237 -> 80 MB), flat over the
#   run; costs ~50% more CPU per check, under 1 CPU s/hour at the defaults.
#   It also makes Node compile its own built-in modules from source (~10 ms of
#   every start), which is why the example init containers set `command` to
#   this line without it. (Node refuses it in NODE_OPTIONS: it must be here.)
# --max-semi-space-size=1 (MiB): a smaller young generation; alone 267 -> 161 MB.
ENTRYPOINT ["/nodejs/bin/node", "--disable-sigusr1", "--lite-mode", "--max-semi-space-size=1", "/app/secrets-agent.mjs"]
CMD ["run"]
