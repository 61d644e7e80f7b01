import js from '@eslint/js';
import { config } from '@cyredis/eslint-config';

// The page's script runs in the browser, outside the TypeScript project: plain recommended rules with browser globals.
const browserGlobals = Object.fromEntries(
  ['document', 'window', 'location', 'fetch', 'EventSource', 'URLSearchParams', 'Node', 'setTimeout', 'encodeURIComponent', 'decodeURIComponent'].map((name) => [name, 'readonly']),
);

export default [
  { ignores: ['src/static/**', 'scripts/**'] },
  ...config(import.meta.dirname),
  { ...js.configs.recommended, files: ['src/static/**/*.js'], ignores: [] },
  { files: ['src/static/**/*.js'], languageOptions: { sourceType: 'module', globals: browserGlobals } },
];
