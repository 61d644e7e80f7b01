import { config } from '@cyredis/eslint-config';

export default [{ ignores: ['.readme-blocks/**'] }, ...config(import.meta.dirname)];
