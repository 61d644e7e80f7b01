import { redisTestConfig } from './src/config.js';

export default redisTestConfig({}, { servers: false });
