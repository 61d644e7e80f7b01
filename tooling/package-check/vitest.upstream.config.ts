import { redisTestConfig } from '@cyredis/testing/config';
import type { ViteUserConfig } from 'vitest/config';

// `pnpm run upstream`: only the reports on the newest upstream releases (kept out of `pnpm test`).
const base = redisTestConfig();
const config: ViteUserConfig = { ...base, test: { ...base.test, include: ['upstream/**/*.test.ts'] } };
export default config;
