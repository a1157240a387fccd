// The configuration module: schema, loading, user-facing messages. The
// contract: loadConfig/parseConfig return a complete, cross-checked AgentConfig
// (types.ts) or throw one ConfigError listing every problem with file:line and
// key path (errors.ts); never a partial config, never a secret value.
export { loadConfig, parseConfig } from './load.ts';
export { configSchema, configShape, buildJsonSchema, type ConfigInput, type ConfigOutput } from './schema.ts';
export { normalizeSignal } from './values.ts';
export { parseDuration, MAX_DURATION_MS, MAX_DURATION_TEXT } from './duration.ts';
export { formatKeyPath, parseKeyPath, type KeySegment } from './keypath.ts';
