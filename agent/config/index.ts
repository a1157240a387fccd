// The configuration module: schema, loading, user-facing messages.
export { loadConfig, parseConfig } from './load.ts';
export { configSchema, configShape, buildJsonSchema, normalizeSignal, type ConfigInput, type ConfigOutput } from './schema.ts';
export { parseDuration, MAX_DURATION_MS, MAX_DURATION_TEXT } from './duration.ts';
export { formatKeyPath, parseKeyPath, type KeySegment } from './keypath.ts';
