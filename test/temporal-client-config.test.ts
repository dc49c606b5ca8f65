/**
 * Temporal client settings: environment → TetherConfig (src/config.ts) → the options both
 * `Connection.connect` and `NativeConnection.connect` receive (src/temporal/client.ts).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig, loadTemporalTls } from '../src/config.ts';
import { temporalConnectionOptions, type PemReader } from '../src/temporal/client.ts';

const VARIABLES = ['TEMPORAL_ADDRESS', 'TEMPORAL_TLS', 'TEMPORAL_TLS_CA', 'TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_SERVER_NAME', 'TEMPORAL_API_KEY'];

/** Sets exactly these variables (the others of VARIABLES unset) for one test. */
function env(vars: Record<string, string>): void {
  for (const name of VARIABLES) vi.stubEnv(name, vars[name] ?? '');
  for (const [name, value] of Object.entries(vars)) vi.stubEnv(name, value);
}

afterEach(() => {
  vi.unstubAllEnvs();
});

const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-tls-'));
const pem = (name: string, text: string): string => {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
};
const ca = pem('ca.pem', '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n');
const crt = pem('client.pem', '-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n');
const key = pem('client.key', '-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n');

const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('utf8'));

function options() {
  return temporalConnectionOptions(loadConfig());
}

describe('Temporal connection options from the environment', () => {
  it('is plaintext with no TLS variable: only the address', () => {
    env({ TEMPORAL_ADDRESS: 'temporal:7233' });
    const config = loadConfig();
    expect(config.temporalTls).toEqual({ enabled: false, caFile: undefined, certFile: undefined, keyFile: undefined, serverName: undefined });
    expect(config.temporalApiKey).toBeUndefined();
    expect(temporalConnectionOptions(config)).toStrictEqual({ address: 'temporal:7233' });
  });

  it('uses TLS with the system roots for TEMPORAL_TLS=true', () => {
    env({ TEMPORAL_ADDRESS: 'temporal.example:7233', TEMPORAL_TLS: 'true' });
    expect(options()).toStrictEqual({ address: 'temporal.example:7233', tls: {} });
  });

  it('trusts the CA of TEMPORAL_TLS_CA (and TLS follows from it)', () => {
    env({ TEMPORAL_ADDRESS: 'temporal.example:7233', TEMPORAL_TLS_CA: ca });
    const o = options();
    expect(Object.keys(o.tls ?? {})).toEqual(['serverRootCACertificate']);
    expect(text(o.tls?.serverRootCACertificate)).toContain('CA');
  });

  it('presents the client pair of TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY, with the server name override', () => {
    env({ TEMPORAL_ADDRESS: '10.0.0.5:7233', TEMPORAL_TLS_CA: ca, TEMPORAL_TLS_CERT: crt, TEMPORAL_TLS_KEY: key, TEMPORAL_TLS_SERVER_NAME: 'temporal.internal' });
    const o = options();
    expect(o.address).toBe('10.0.0.5:7233');
    expect(o.tls?.serverNameOverride).toBe('temporal.internal');
    expect(text(o.tls?.clientCertPair?.crt)).toContain('CLIENT');
    expect(text(o.tls?.clientCertPair?.key)).toContain('PRIVATE KEY');
    expect(text(o.tls?.serverRootCACertificate)).toContain('CA');
    expect(o.apiKey).toBeUndefined();
  });

  it('sends TEMPORAL_API_KEY, over TLS by default', () => {
    env({ TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', TEMPORAL_API_KEY: 'secret-key' });
    expect(options()).toStrictEqual({ address: 'ns.acct.tmprl.cloud:7233', tls: {}, apiKey: 'secret-key' });
  });

  it('sends TEMPORAL_API_KEY over plaintext when TEMPORAL_TLS=false', () => {
    env({ TEMPORAL_ADDRESS: 'localhost:7233', TEMPORAL_API_KEY: 'secret-key', TEMPORAL_TLS: 'false' });
    expect(options()).toStrictEqual({ address: 'localhost:7233', apiKey: 'secret-key' });
  });

  it('accepts 1/0/yes/no for TEMPORAL_TLS and rejects anything else, naming the variable', () => {
    env({ TEMPORAL_TLS: '1' });
    expect(loadTemporalTls().temporalTls.enabled).toBe(true);
    env({ TEMPORAL_TLS: 'no', TEMPORAL_API_KEY: 'k' });
    expect(loadTemporalTls().temporalTls.enabled).toBe(false);
    env({ TEMPORAL_TLS: 'maybe' });
    expect(() => loadConfig()).toThrow('TEMPORAL_TLS must be true or false, got "maybe"');
  });

  it('wants TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY together', () => {
    env({ TEMPORAL_TLS_CERT: crt });
    expect(() => loadConfig()).toThrow(/TEMPORAL_TLS_CERT is set but TEMPORAL_TLS_KEY is not/);
    env({ TEMPORAL_TLS_KEY: key });
    expect(() => loadConfig()).toThrow(/TEMPORAL_TLS_KEY is set but TEMPORAL_TLS_CERT is not/);
  });

  it('rejects TLS files together with TEMPORAL_TLS=false', () => {
    env({ TEMPORAL_TLS: 'false', TEMPORAL_TLS_CA: ca, TEMPORAL_TLS_SERVER_NAME: 'x' });
    expect(() => loadConfig()).toThrow('TEMPORAL_TLS=false contradicts TEMPORAL_TLS_CA, TEMPORAL_TLS_SERVER_NAME');
  });

  it('reads the files at connect time and names the variable of a missing one', () => {
    const missing = path.join(dir, 'nope.pem');
    env({ TEMPORAL_TLS_CA: missing });
    const config = loadConfig(); // no file access yet
    expect(() => temporalConnectionOptions(config)).toThrow(`TEMPORAL_TLS_CA=${missing}: cannot read the file (no such file)`);
    env({ TEMPORAL_TLS_CERT: crt, TEMPORAL_TLS_KEY: missing });
    expect(() => options()).toThrow(`TEMPORAL_TLS_KEY=${missing}: cannot read the file (no such file)`);
  });

  it('is pure apart from the file reader it is given', () => {
    const reads: Array<[string, string]> = [];
    const read: PemReader = (file, variable) => {
      reads.push([file, variable]);
      return Buffer.from(variable);
    };
    const o = temporalConnectionOptions(
      {
        temporalAddress: 't:7233',
        temporalTls: { enabled: true, caFile: '/ca', certFile: '/crt', keyFile: '/key', serverName: 'sni' },
        temporalApiKey: 'k',
      },
      read,
    );
    expect(reads).toEqual([
      ['/ca', 'TEMPORAL_TLS_CA'],
      ['/crt', 'TEMPORAL_TLS_CERT'],
      ['/key', 'TEMPORAL_TLS_KEY'],
    ]);
    expect(o).toStrictEqual({
      address: 't:7233',
      tls: { serverRootCACertificate: Buffer.from('TEMPORAL_TLS_CA'), clientCertPair: { crt: Buffer.from('TEMPORAL_TLS_CERT'), key: Buffer.from('TEMPORAL_TLS_KEY') }, serverNameOverride: 'sni' },
      apiKey: 'k',
    });
    // Configuration objects without TLS fields (older callers, tests) stay plaintext.
    expect(temporalConnectionOptions({ temporalAddress: 't:7233' }, read)).toStrictEqual({ address: 't:7233' });
  });
});
