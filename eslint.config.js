// Type-aware lint: a floating promise in a daemon is an unhandled rejection
// waiting to happen, so the promise rules are errors, not warnings.
//
// No import cycles (import-x/no-cycle), static or dynamic (`await import()`
// counts: allowUnsafeDynamicCyclicDependency stays off). Type-only imports are
// erased at run time and not counted.
import js from '@eslint/js';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

/** agent/, top layer first: cli -> pipeline/refresh -> the stages -> the foundations. */
const LAYERS = [
  ['agent/main.ts'],
  ['agent/cli'],
  ['agent/pipeline.ts', 'agent/refresh', 'agent/eso', 'agent/inject', 'agent/webhook'],
  ['agent/source', 'agent/render', 'agent/output', 'agent/notify'],
  ['agent/observe', 'agent/config', 'agent/errors.ts', 'agent/types.ts', 'agent/signals.ts', 'agent/version.ts'],
];
const STAGES = LAYERS[3];

function layerZones() {
  const zones = [];
  LAYERS.forEach((layer, i) => {
    const above = LAYERS.slice(0, i).flat();
    for (const target of layer) if (above.length > 0) zones.push({ target, from: above, message: `${target} is below ${above.join(', ')} in the layering (agent/main.ts)` });
  });
  for (const target of STAGES) {
    const others = STAGES.filter((s) => s !== target);
    zones.push({ target, from: others, message: `one stage does not import another (the pipeline composes them): ${target} from ${others.join(', ')}` });
  }
  return zones;
}

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'out/', 'coverage/', 'bench-results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/only-throw-error': 'error',
    },
  },
  {
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      // Follow imports into .ts files (the default is .js only), parsed as TypeScript.
      'import-x/extensions': ['.ts', '.js', '.mjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.mjs'] })],
    },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // The layering (agent/main.ts, README "How it works"): a layer imports only
      // from the layers below it, and one stage never imports another (the
      // pipeline composes them). Type-only imports count too.
      'import-x/no-restricted-paths': ['error', { basePath: import.meta.dirname, zones: layerZones() }],
    },
  },
  {
    files: ['test/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // Plain JavaScript (the config itself, the benchmarks' hand-written baseline): no type information.
    files: ['eslint.config.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' },
    },
  },
);
