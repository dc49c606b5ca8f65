/**
 * The stack's Temporal: the dev server (stack/temporal-dev-server.ts), the two-node cluster on the
 * stack's PostgreSQL with mTLS (stack/temporal-cluster.ts), or a frontend that runs already. Each
 * way ends with the namespace serving tether's search attributes, and with the environment that
 * makes a tether process use it.
 */
import { Connection } from '@temporalio/client';
import { dialOptions, type TemporalConnectionConfig, type TemporalConnectionOptions } from '../src/temporal/client.ts';
import type { TemporalTlsSettings } from '../src/config.ts';
import { ensureSearchAttributes, startTemporalDevServer, type StartTemporalDevServerOptions, type TemporalDevServer } from './temporal-dev-server.ts';
import { FrontendRelay } from '../src/temporal/frontend-relay.ts';
import { clusterClientEnv, clusterTlsConfig, startTemporalCluster, type TemporalCluster, type TemporalClusterTls } from './temporal-cluster.ts';
import { findFreePort } from './free-port.ts';

export type TemporalChoice =
  /** The dev server: on `port` (default: a free one), in memory unless `dbFile`, headless unless `uiPort`. */
  | { dev: Omit<StartTemporalDevServerOptions, 'binary' | 'port' | 'namespace'> & { port?: number } }
  /**
   * A cluster of `nodes` (default 2) on the stack's PostgreSQL with mTLS, its databases `database`
   * (default `temporal`) and `<database>_visibility`. This process reaches it through a
   * FrontendRelay of its own (first frontend preferred), closed at stop.
   */
  | { cluster: { dataDir: string; nodes?: number; metrics?: boolean; database?: string; readyTimeoutMs?: number } }
  /**
   * A frontend that runs already (several: comma-separated), with a cluster's mTLS (`tls`) or the
   * connection settings of src/config.ts (`connection`: TLS, API key); its search attributes are
   * registered unless `registered`.
   */
  | { address: string; tls?: TemporalClusterTls; connection?: Omit<TemporalConnectionConfig, 'temporalAddress'>; registered?: boolean };

export interface StackTemporal {
  kind: 'dev' | 'cluster' | 'address';
  /** TEMPORAL_ADDRESS: one frontend, or several separated by commas. */
  address: string;
  namespace: string;
  tls?: TemporalClusterTls;
  /** What an SDK connection of this process dials (the relay's address for several frontends), with TLS. */
  dial: TemporalConnectionOptions;
  /** The environment that makes a tether process (or the CLI) use this Temporal. */
  env: Record<string, string>;
  /** The dev server's web UI, when it has one. */
  uiUrl?: string;
  /** The dev server (kill and restart it through `restart`). */
  devServer?: TemporalDevServer;
  cluster?: TemporalCluster;
  /** Every Temporal process the stack started, with its current pid. */
  processes(): Array<{ name: string; pid: number; address: string }>;
  /** Starts the dev server again on its port and file (after a kill). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface StackTemporalOptions {
  /** The Temporal CLI (the dev server's binary). */
  binary: string;
  namespace: string;
  /** The stack's PostgreSQL server (admin URL): where a cluster keeps its databases. */
  postgresAdminUrl: string;
}

export async function startStackTemporal(choice: TemporalChoice, o: StackTemporalOptions): Promise<StackTemporal> {
  const { namespace } = o;
  if ('dev' in choice) {
    const options: StartTemporalDevServerOptions = { ...choice.dev, binary: o.binary, port: choice.dev.port ?? (await findFreePort()), namespace };
    let server = await startTemporalDevServer(options);
    const dial = await dialOptions({ temporalAddress: server.address });
    return {
      kind: 'dev',
      address: server.address,
      namespace,
      dial,
      env: { TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: namespace },
      ...(server.uiUrl ? { uiUrl: server.uiUrl } : {}),
      get devServer() {
        return server;
      },
      processes: () => [{ name: 'temporal-dev', pid: server.pid, address: server.address }],
      async restart() {
        await server.stop();
        server = await startTemporalDevServer(options);
      },
      stop: () => server.stop(),
    };
  }
  if ('cluster' in choice) {
    const { database = 'temporal', ...clusterOptions } = choice.cluster;
    const db = new URL(o.postgresAdminUrl);
    db.pathname = `/${database}`;
    const cluster = await startTemporalCluster({ ...clusterOptions, databaseUrl: db.toString(), namespace });
    const env = clusterClientEnv(cluster);
    const tls = clusterTlsConfig(cluster.tls);
    let relay: FrontendRelay;
    try {
      relay = await FrontendRelay.start({ frontends: cluster.frontends, tls, prefer: 0 });
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return {
      kind: 'cluster',
      address: env.TEMPORAL_ADDRESS!,
      namespace,
      tls: cluster.tls,
      dial: { address: relay.address, tls },
      env,
      cluster,
      processes: () => cluster.processes,
      restart: () => Promise.reject(new Error('restart a node of the cluster by name: stack.temporal.cluster.restart(name)')),
      async stop() {
        await relay.close();
        await cluster.stop();
      },
    };
  }
  const dial = await dialOptions({ ...choice.connection, temporalAddress: choice.address, ...(choice.tls ? { temporalTls: tlsSettings(choice.tls) } : {}) });
  if (!choice.registered) {
    const connection = await Connection.connect(dial);
    try {
      await ensureSearchAttributes(connection, namespace);
    } finally {
      await connection.close();
    }
  }
  return {
    kind: 'address',
    address: choice.address,
    namespace,
    ...(choice.tls ? { tls: choice.tls } : {}),
    dial,
    env: choice.tls ? clusterClientEnv({ frontends: choice.address.split(','), tls: choice.tls, namespace }) : { TEMPORAL_ADDRESS: choice.address, TEMPORAL_NAMESPACE: namespace },
    processes: () => [],
    restart: () => Promise.reject(new Error(`Temporal at ${choice.address} is not the stack's to restart`)),
    stop: async () => undefined,
  };
}

function tlsSettings(tls: TemporalClusterTls): TemporalTlsSettings {
  return { enabled: true, ...tls };
}
