import { config } from '@cyredis/eslint-config';

// Child-process fixtures are plain .mjs outside the TypeScript project, so the type-aware rules cannot parse them.
export default [...config(import.meta.dirname), { ignores: ['test/fixtures/**'] }];
