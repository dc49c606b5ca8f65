/** Connections to Temporal for clients and workers, from configuration. */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { TetherConfig } from '../config.ts';

export async function connectClient(config: Pick<TetherConfig, 'temporalAddress' | 'temporalNamespace'>): Promise<Client> {
  const connection = await Connection.connect({ address: config.temporalAddress });
  return new Client({ connection, namespace: config.temporalNamespace });
}

export async function connectWorker(config: Pick<TetherConfig, 'temporalAddress'>): Promise<NativeConnection> {
  return NativeConnection.connect({ address: config.temporalAddress });
}
