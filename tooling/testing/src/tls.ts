import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

let made: TlsFiles | undefined;

/** A throwaway CA and a server certificate for `localhost`/127.0.0.1, made once per process with openssl. */
export function testCertificates(): TlsFiles {
  if (made) return made;
  const dir = mkdtempSync(path.join(tmpdir(), 'cyredis-tls-'));
  const f = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=cyredis test CA', '-keyout', f('ca.key'), '-out', f('ca.crt'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr'));
  writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('ext.cnf'), '-out', f('server.crt'));
  made = { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
  return made;
}
