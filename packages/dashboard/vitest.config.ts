import { redisTestConfig } from '@cyredis/testing/config';

export default redisTestConfig();
