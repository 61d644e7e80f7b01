// The page and its plain script and style, shipped in the package's static folder and read once from there.
import type { ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { send, sendError } from './http.js';

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/assets/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/assets/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};
const loaded = new Map<string, string>();

/** Answers a GET of the page or one of its assets, 404 for anything else. */
export function serveStatic(res: ServerResponse, path: string, title: string): void {
  const entry = FILES[path];
  if (entry === undefined) return sendError(res, 404, 'not found');
  let body = loaded.get(entry.file);
  if (body === undefined) {
    body = readFileSync(new URL(`../static/${entry.file}`, import.meta.url), 'utf8');
    loaded.set(entry.file, body);
  }
  if (entry.file === 'index.html') body = body.replaceAll('{{title}}', escapeHtml(title));
  send(res, 200, entry.type, body);
}

/** The text as HTML that shows it verbatim. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
