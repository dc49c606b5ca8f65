/** What the scale simulation's driver (bench/scale-sim.ts) and its processes (bench/scale-sim-child.ts) exchange. */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';

export interface SimTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  serverName: string;
}

export interface SimEndpoint {
  address: string;
  tls?: SimTls;
}

export type SimChildConfig =
  | { role: 'hosts'; namespace: string; databaseUrl: string; hosts: Array<{ name: string; endpoint: SimEndpoint }>; poolMax: number }
  | { role: 'control'; namespace: string; databaseUrl: string; endpoint: SimEndpoint; taskQueue: string; volumeDir: string };

export type SimParentMessage = { type: 'config'; config: SimChildConfig } | { type: 'stats'; id: number } | { type: 'idle-cpu'; id: number; ms: number } | { type: 'stop' };

export interface SimChildStats {
  rssKb: number;
  heapUsedMb: number;
  cpuMs: number;
  queues: number;
  hypervisorCalls: Record<string, number>;
}

export function tlsConfig(tls: SimTls | undefined): TLSConfig | undefined {
  if (!tls) return undefined;
  return {
    serverRootCACertificate: readFileSync(tls.caFile),
    clientCertPair: { crt: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) },
    serverNameOverride: tls.serverName,
  };
}

