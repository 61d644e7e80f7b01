import { redisTestConfig } from '@cyredis/testing/config';

// The demo starts its own private Redis, so the test needs no shared servers.
export default redisTestConfig({ test: { testTimeout: 180_000 } }, { servers: false });
