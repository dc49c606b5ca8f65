/**
 * The certificates of the cluster mode's mTLS: a CA, one certificate the Temporal nodes show each
 * other and their clients, and one client certificate every tether process presents. Made with
 * openssl at the first start into `<dir>` (keys mode 0600), reused on every later start — a restart
 * keeps the same CA, so nothing that trusted it before needs to change.
 *
 *   ca.pem, ca.key          the CA (EC P-256, 10 years)
 *   server.pem, server.key  CN/SAN `localhost` + 127.0.0.1 + ::1; serverAuth and clientAuth (the nodes
 *                           also call each other and their own frontends with it)
 *   client.pem, client.key  CN `tether`; clientAuth only
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface ClusterCertificates {
  /** The folder holding them all. */
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The name the server certificate carries: what clients verify it against. */
  serverName: string;
  /** True when this call made them (false: found and reused). */
  created: boolean;
}

export const CLUSTER_SERVER_NAME = 'localhost';
const DAYS = '3650';

export function clusterCertificatePaths(dir: string): Omit<ClusterCertificates, 'created'> {
  return {
    dir,
    caFile: path.join(dir, 'ca.pem'),
    serverCertFile: path.join(dir, 'server.pem'),
    serverKeyFile: path.join(dir, 'server.key'),
    clientCertFile: path.join(dir, 'client.pem'),
    clientKeyFile: path.join(dir, 'client.key'),
    serverName: CLUSTER_SERVER_NAME,
  };
}

/**
 * Returns the certificates in `dir`, making them first when any file is missing (then all are made
 * anew: a half-made set is never trusted). Keys are written 0600, certificates 0644.
 */
export async function ensureClusterCertificates(dir: string): Promise<ClusterCertificates> {
  const paths = clusterCertificatePaths(path.resolve(dir));
  const files = [paths.caFile, paths.serverCertFile, paths.serverKeyFile, paths.clientCertFile, paths.clientKeyFile];
  if (files.every((f) => fs.existsSync(f)) && fs.existsSync(path.join(paths.dir, 'ca.key'))) {
    for (const key of [paths.serverKeyFile, paths.clientKeyFile, path.join(paths.dir, 'ca.key')]) await fsp.chmod(key, 0o600);
    return { ...paths, created: false };
  }
  await fsp.mkdir(paths.dir, { recursive: true, mode: 0o700 });
  // Made in a scratch folder and renamed into place: a crash half-way leaves no partial set behind.
  const work = await fsp.mkdtemp(path.join(paths.dir, '.new-'));
  try {
    const f = (name: string) => path.join(work, name);
    await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca.key')]);
    await openssl([
      'req', '-x509', '-new', '-key', f('ca.key'), '-sha256', '-days', DAYS, '-subj', '/O=tether/CN=tether cluster CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash', '-out', f('ca.pem'),
    ]);
    await issue(work, 'server', `/O=tether/CN=${CLUSTER_SERVER_NAME}`, [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      `subjectAltName=DNS:${CLUSTER_SERVER_NAME},IP:127.0.0.1,IP:::1`,
      'authorityKeyIdentifier=keyid',
    ]);
    await issue(work, 'client', '/O=tether/CN=tether', [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=clientAuth',
      'subjectAltName=DNS:tether',
      'authorityKeyIdentifier=keyid',
    ]);
    for (const name of ['ca.key', 'server.key', 'client.key']) await fsp.chmod(f(name), 0o600);
    for (const name of ['ca.pem', 'server.pem', 'client.pem']) await fsp.chmod(f(name), 0o644);
    for (const name of ['ca.key', 'ca.pem', 'server.key', 'server.pem', 'client.key', 'client.pem']) {
      await fsp.rename(f(name), path.join(paths.dir, name));
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
  return { ...paths, created: true };
}

async function issue(work: string, name: string, subject: string, extensions: string[]): Promise<void> {
  const f = (n: string) => path.join(work, n);
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f(`${name}.ec.key`)]);
  // PKCS#8: what every TLS stack (Go, rustls, Node) reads.
  await openssl(['pkcs8', '-topk8', '-nocrypt', '-in', f(`${name}.ec.key`), '-out', f(`${name}.key`)]);
  await fsp.rm(f(`${name}.ec.key`));
  await openssl(['req', '-new', '-key', f(`${name}.key`), '-subj', subject, '-out', f(`${name}.csr`)]);
  await fsp.writeFile(f(`${name}.ext`), `${extensions.join('\n')}\n`);
  await openssl([
    'x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-set_serial', `0x${randomSerial()}`,
    '-days', DAYS, '-sha256', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`),
  ]);
  await fsp.rm(f(`${name}.csr`));
  await fsp.rm(f(`${name}.ext`));
}

function randomSerial(): string {
  // A positive 64-bit serial (high bit clear).
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

async function openssl(args: string[]): Promise<void> {
  try {
    await execFileAsync('openssl', args);
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: string };
    if (e.code === 'ENOENT') throw new Error('openssl is not installed: the cluster mode makes its certificates with it (apt-get install openssl)');
    throw new Error(`openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}
