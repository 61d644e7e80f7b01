// Build step: copies the page, script and style from src/static into dist/static, where the handler reads them.
import { cpSync } from 'node:fs';

cpSync(new URL('../src/static', import.meta.url), new URL('../dist/static', import.meta.url), { recursive: true });
