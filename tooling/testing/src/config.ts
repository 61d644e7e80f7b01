import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig, type ViteUserConfig } from 'vitest/config';

/**
 * The vitest config every package uses: tests in `test/`, private Redis servers from the global setup,
 * timeouts sized for a loaded 2-core machine. Pass overrides to add options; `servers: false` skips the
 * shared single node and cluster for suites that start their own.
 */
export function redisTestConfig(overrides: ViteUserConfig = {}, options: { servers?: boolean } = {}): ViteUserConfig {
  const servers = options.servers ?? true;
  return mergeConfig(
    defineConfig({
      test: {
        include: ['test/**/*.test.ts'],
        globalSetup: servers ? [fileURLToPath(new URL('./global-setup.js', import.meta.url))] : [],
        testTimeout: 60_000,
        hookTimeout: 60_000,
        pool: 'forks',
        reporters: ['default'],
      },
    }),
    overrides,
  );
}
