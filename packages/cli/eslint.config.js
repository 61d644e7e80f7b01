import { config } from '@cyredis/eslint-config';

export default config(import.meta.dirname);
