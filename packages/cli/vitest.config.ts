import { redisTestConfig } from '@cyredis/testing/config';

// Each test starts the built executable a dozen times or more: allow for a loaded 2-core machine.
export default redisTestConfig({ test: { testTimeout: 240_000 } });
