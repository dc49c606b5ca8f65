/**
 * Connections to Temporal for clients and workers, from configuration. Both kinds get the same
 * address, TLS (server CA, mTLS client pair, server name) and API key.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection, type ClientOptions, type TLSConfig } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { TemporalTlsSettings, TetherConfig } from '../config.ts';
import { codecDataConverter } from '../security/codec-config.ts';
import { tracingClientInterceptors } from '../tracing/temporal-tracing.ts';
import { FrontendRelay, frontendAddresses } from './frontend-relay.ts';

/** What both `Connection.connect` (client) and `NativeConnection.connect` (worker) accept. */
export interface TemporalConnectionOptions {
  address: string;
  /** Absent: plaintext. */
  tls?: TLSConfig;
  /** Sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
}

export type TemporalConnectionConfig = Pick<TetherConfig, 'temporalAddress'> & Partial<Pick<TetherConfig, 'temporalTls' | 'temporalApiKey'>>;

/** Reads a PEM file named by an environment variable; the error names the variable. */
export type PemReader = (file: string, variable: string) => Uint8Array;

export const readPemFile: PemReader = (file, variable) => {
  try {
    return readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new Error(`${variable}=${file}: cannot read the file (${why})`, { cause: err });
  }
};

/**
 * The connection options for a configuration: `address`, `tls` when TLS is on (files read through
 * `read`, by default from disk now), `apiKey` when set. Pure apart from `read`.
 */
export function temporalConnectionOptions(config: TemporalConnectionConfig, read: PemReader = readPemFile): TemporalConnectionOptions {
  const options: TemporalConnectionOptions = { address: config.temporalAddress };
  const tls: TemporalTlsSettings | undefined = config.temporalTls;
  if (tls?.enabled) {
    const t: TLSConfig = {};
    if (tls.caFile !== undefined) t.serverRootCACertificate = read(tls.caFile, 'TEMPORAL_TLS_CA');
    if (tls.certFile !== undefined || tls.keyFile !== undefined) {
      if (tls.certFile === undefined || tls.keyFile === undefined) {
        throw new Error('TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together (mTLS client certificate pair)');
      }
      t.clientCertPair = { crt: read(tls.certFile, 'TEMPORAL_TLS_CERT'), key: read(tls.keyFile, 'TEMPORAL_TLS_KEY') };
    }
    if (tls.serverName !== undefined) t.serverNameOverride = tls.serverName;
    options.tls = t;
  }
  if (config.temporalApiKey !== undefined) options.apiKey = config.temporalApiKey;
  return options;
}

/**
 * What every tether Client gets besides its connection: the payload codec, and Temporal's
 * OpenTelemetry client interceptor when tracing is on (so a workflow's spans join the caller's trace).
 */
export function clientOptions(): Pick<ClientOptions, 'dataConverter' | 'interceptors'> {
  return { dataConverter: codecDataConverter(), interceptors: { workflow: tracingClientInterceptors() } };
}

const relays = new Map<string, Promise<FrontendRelay>>();

/** The relays this process runs (one per list of frontends): tests and the chaos runner read which frontend each uses. */
export async function frontendRelays(): Promise<FrontendRelay[]> {
  return Promise.all(relays.values());
}

/**
 * The options an SDK connection dials with: those of temporalConnectionOptions when TEMPORAL_ADDRESS
 * names one frontend; when it names several (comma-separated), the address of this process's
 * FrontendRelay to them (started once, shared by every connection of the process), which fails over
 * to another frontend when the one in use goes down. TLS stays end to end: the server name to verify
 * is TEMPORAL_TLS_SERVER_NAME, or else the first frontend's host.
 */
export async function dialOptions(config: TemporalConnectionConfig, read: PemReader = readPemFile): Promise<TemporalConnectionOptions> {
  const options = temporalConnectionOptions(config, read);
  const frontends = frontendAddresses(config.temporalAddress);
  if (frontends.length <= 1) return { ...options, address: frontends[0] ?? options.address };
  if (options.tls && options.tls.serverNameOverride === undefined) {
    options.tls = { ...options.tls, serverNameOverride: frontends[0]!.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') };
  }
  const key = JSON.stringify(frontends);
  let relay = relays.get(key);
  if (!relay) {
    relay = FrontendRelay.start({
      frontends,
      ...(options.tls ? { tls: options.tls } : {}),
      ...(options.apiKey ? { apiKey: options.apiKey } : {}),
      onSwitch: (from, to, why) => console.warn(`Temporal: moving from frontend ${from} to ${to}: ${why}`),
    });
    relays.set(key, relay);
    relay.catch(() => relays.delete(key));
  }
  return { ...options, address: (await relay).address };
}

export async function connectClient(config: TemporalConnectionConfig & Pick<TetherConfig, 'temporalNamespace'>): Promise<Client> {
  const connection = await Connection.connect(await dialOptions(config));
  return new Client({ connection, namespace: config.temporalNamespace, ...clientOptions() });
}

export async function connectWorker(config: TemporalConnectionConfig): Promise<NativeConnection> {
  return NativeConnection.connect(await dialOptions(config));
}
