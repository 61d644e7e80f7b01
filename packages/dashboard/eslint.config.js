import js from '@eslint/js';
import { config } from '@cyredis/eslint-config';

// The page's script runs in the browser, outside the TypeScript project: plain recommended rules with browser globals.
const browserGlobals = Object.fromEntries(
  ['document', 'window', 'location', 'fetch', 'EventSource', 'URLSearchParams', 'Node', 'setTimeout', 'encodeURIComponent', 'decodeURIComponent'].map((name) => [name, 'readonly']),
);

export default [
  // The shared, type-aware config for the TypeScript; the static folder gets the browser block below instead.
  ...config(import.meta.dirname).map((block) =>
    Object.keys(block).every((key) => key === 'ignores') ? block : { ...block, ignores: [...(block.ignores ?? []), 'static/**'] },
  ),
  { ...js.configs.recommended, files: ['static/**/*.js'] },
  { files: ['static/**/*.js'], languageOptions: { sourceType: 'module', globals: browserGlobals } },
];
