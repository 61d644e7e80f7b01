import { redisTestConfig } from '@cyredis/testing/config';

// Each scenario starts (and breaks) its own servers, so files run one at a time and skip the shared ones.
export default redisTestConfig({ test: { fileParallelism: false, testTimeout: 120_000 } }, { servers: false });
