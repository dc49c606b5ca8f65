/**
 * The one assembly of a tether stack, used by `npm start` (workers/stack.ts), the chaos runner
 * (chaos/stack.ts), the benchmark (bench/stack.ts) and the integration tests
 * (test/support/test-stack.ts):
 *   libvirt (the local system daemon started when none answers) → PostgreSQL (embedded, or a URL;
 *   a fresh database of its own by option: stack/postgres.ts) → Temporal (the dev server, the
 *   two-node mTLS cluster on that PostgreSQL, or a given frontend; namespace and search attributes:
 *   stack/temporal.ts) → migrations → tether's processes, as child processes (stack/tether-process.ts)
 *   or in this process (stack/in-process.ts).
 * Everything it starts, and whatever the caller hands it with onStop, ends with one stop(), in
 * reverse order.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../src/config.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import { clientOptions } from '../src/temporal/client.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { ensureLibvirtd } from './libvirtd.ts';
import { startStackPostgres, type PostgresChoice, type StackPostgres } from './postgres.ts';
import { startStackTemporal, type StackTemporal, type TemporalChoice } from './temporal.ts';
import { TetherProcess, type TetherScript } from './tether-process.ts';
import { startInProcessTether, type InProcessTether, type InProcessTetherOptions } from './in-process.ts';

export interface StackOptions {
  /** Says what happens: a line a step, with its time. Silent when omitted. */
  log?: (line: string) => void;
  /** The stack's folder (logs of its processes under logs/); created. */
  dataDir?: string;
  /** Remove `dataDir` at stop. */
  removeDataDir?: boolean;
  /** Make sure the local system libvirt daemon answers at this URI (started when none does, and then stopped at stop unless keepLibvirtd). */
  libvirtUri?: string;
  keepLibvirtd?: boolean;
  postgres: PostgresChoice;
  /** A fresh database of this name for tether (on a given server: dropped at stop unless keepDatabase). */
  database?: string;
  keepDatabase?: boolean;
  temporal: TemporalChoice;
  /** Default: TEMPORAL_NAMESPACE, or "default". */
  namespace?: string;
  /** Run tether's migrations on its database; default true. */
  migrate?: boolean;
  /** Aborted (Ctrl-C during the start): the start stops what it started and rejects after the step under way. */
  signal?: AbortSignal;
}

/** One of tether's processes as a child of the stack. */
export interface ProcessSpec {
  name: string;
  script: TetherScript;
  /** Its whole environment; default the stack's (childEnv()). */
  env?: () => NodeJS.ProcessEnv;
  /** Default <dataDir>/logs/<name>.log. */
  logFile?: string;
  onStart?: (pid: number) => void;
}

export interface Stack {
  postgres: StackPostgres;
  temporal: StackTemporal;
  /** tether's database. */
  databaseUrl: string;
  namespace: string;
  dataDir: string | undefined;
  logDir: string | undefined;
  /** DATABASE_URL and the Temporal variables: what a tether process (or the CLI) needs to use this stack. */
  env: Record<string, string>;
  /** This process's environment with the stack's (and `extra`) over it, for a child. */
  childEnv(extra?: Record<string, string | undefined>): NodeJS.ProcessEnv;
  /**
   * A pool on tether's database and a Temporal client for this process (closed at stop); the client
   * with tether's codec and tracing from this process's settings, or `plain` (for processes started
   * without them).
   */
  connect(pool: { max: number; applicationName?: string; plain?: boolean }): Promise<{ db: Database; client: Client }>;
  /** The service layer (as the API server holds it) over `connect`'s pool and client. */
  service(o: { db: Database; client: Client; blockStorage: BlockStorage; controlTaskQueue: string; host: string }): TetherService;
  /** Starts tether's processes as children (restarted when they die unasked); with waitReady, until each logs that it serves. */
  startProcesses(specs: ProcessSpec[], o?: { waitReady?: boolean }): Promise<Map<string, TetherProcess>>;
  /** A control-plane worker and a compute agent in this process. */
  startInProcess(o: Omit<InProcessTetherOptions, 'dial' | 'namespace' | 'databaseUrl'>): Promise<InProcessTether>;
  /** Adds a step to stop(): they run in reverse order of adding. */
  onStop(name: string, fn: () => Promise<unknown>): void;
  /** Stops everything, in reverse order; a step that fails is logged and the others still run. Idempotent. */
  stop(): Promise<void>;
}

export async function buildStack(o: StackOptions): Promise<Stack> {
  const say = o.log ?? (() => undefined);
  const namespace = o.namespace ?? (process.env.TEMPORAL_NAMESPACE || 'default');
  const stops: Array<{ name: string; fn: () => Promise<unknown> }> = [];
  const onStop = (name: string, fn: () => Promise<unknown>) => void stops.push({ name, fn });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const { name, fn } of stops.reverse()) {
        await fn().then(
          () => say(`  ✓ ${name} stopped`),
          (err: unknown) => say(`  ! stopping ${name}: ${(err as Error).message}`),
        );
      }
      stops.length = 0;
    })();
    return stopping;
  };
  const timed = async <T>(label: (result: T) => string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const result = await fn();
    say(`  ✓ ${label(result)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return result;
  };

  try {
    const logDir = o.dataDir ? path.join(o.dataDir, 'logs') : undefined;
    if (o.dataDir) {
      await fsp.mkdir(logDir!, { recursive: true });
      if (o.removeDataDir) onStop('stack folder', () => fsp.rm(o.dataDir!, { recursive: true, force: true }));
    }
    if (o.libvirtUri) {
      const uri = o.libvirtUri;
      const libvirtd = await timed(() => `libvirt at ${uri}`, () => ensureLibvirtd(uri));
      if (libvirtd.startedByUs && !o.keepLibvirtd) onStop('libvirtd', () => libvirtd.stop());
      o.signal?.throwIfAborted();
    }

    const postgresStep = () =>
      timed(
        (p) => (p.kind === 'embedded' ? `embedded PostgreSQL on port ${p.port}` : `PostgreSQL at ${new URL(p.url).host}${o.database ? `, database ${o.database}` : ''}`),
        () => startStackPostgres(o.postgres, { ...(o.database ? { database: o.database } : {}), ...(o.keepDatabase ? { keepDatabase: true } : {}) }),
      ).then((p) => {
        onStop('PostgreSQL', () => p.stop());
        return p;
      });
    const temporalStep = (postgresAdminUrl: string, clusterDatabase?: string) =>
      timed(
        (t) => (t.kind === 'dev' ? `Temporal dev server on ${t.address}` : t.kind === 'cluster' ? `Temporal cluster: ${t.cluster!.frontends.length} nodes on PostgreSQL, mTLS` : `Temporal at ${t.address}`),
        () => startStackTemporal('cluster' in o.temporal && clusterDatabase ? { cluster: { ...o.temporal.cluster, database: clusterDatabase } } : o.temporal, { binary: 'dev' in o.temporal ? loadConfig().temporalBinary : '', namespace, postgresAdminUrl }),
      ).then((t) => {
        onStop(t.kind === 'cluster' ? 'Temporal cluster' : 'Temporal', () => t.stop());
        return t;
      });
    let postgres: StackPostgres;
    let temporal: StackTemporal;
    if ('cluster' in o.temporal) {
      // The cluster keeps its databases on the stack's PostgreSQL: next to a fresh database of the
      // stack's, `<it>_temporal` (dropped with it from a given server), else `temporal`.
      postgres = await postgresStep();
      o.signal?.throwIfAborted();
      const database = o.temporal.cluster.database ?? (o.database ? `${o.database}_temporal` : undefined);
      if (database && postgres.kind === 'url' && o.database && !o.keepDatabase) {
        onStop("Temporal's databases", () => postgres.dropDatabases([database, `${database}_visibility`]));
      }
      temporal = await temporalStep(postgres.adminUrl, database);
    } else {
      const [p, t] = await Promise.allSettled([postgresStep(), temporalStep('')]);
      if (p.status === 'rejected') throw p.reason;
      if (t.status === 'rejected') throw t.reason;
      [postgres, temporal] = [p.value, t.value];
    }
    o.signal?.throwIfAborted();
    if (o.migrate !== false) await timed(() => 'database migrations', () => migrate(postgres.url));
    o.signal?.throwIfAborted();

    const env = { DATABASE_URL: postgres.url, ...temporal.env };
    const childEnv = (extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv => ({
      ...process.env,
      ...env,
      // koffi runs libvirt calls on libuv's pool: a slow unplug must not starve file and DNS work.
      UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16',
      ...extra,
    });

    const stack: Stack = {
      postgres,
      temporal,
      databaseUrl: postgres.url,
      namespace,
      dataDir: o.dataDir,
      logDir,
      env,
      childEnv,
      async connect(pool) {
        const db = createDatabase(postgres.url, { max: pool.max, ...(pool.applicationName ? { applicationName: pool.applicationName } : {}) });
        onStop('database pool', () => db.end());
        const connection = await Connection.connect(temporal.dial);
        onStop('Temporal client', () => connection.close());
        return { db, client: new Client({ connection, namespace, ...(pool.plain ? {} : clientOptions()) }) };
      },
      service: ({ db, client, blockStorage, controlTaskQueue, host }) =>
        new TetherService({ db, client, blockStorage, config: { controlTaskQueue, computeHost: host, availabilityZone: 'nova', defaultDiskBus: 'scsi' } }),
      async startProcesses(specs, { waitReady = false } = {}) {
        const started = new Map<string, TetherProcess>();
        for (const spec of specs) {
          const logFile = spec.logFile ?? (logDir ? path.join(logDir, `${spec.name}.log`) : undefined);
          if (!logFile) throw new Error(`${spec.name}: a process of the stack needs a log file (dataDir or logFile)`);
          started.set(spec.name, new TetherProcess({ name: spec.name, script: spec.script, env: spec.env ?? (() => childEnv()), logFile, log: say, waitReady, ...(spec.onStart ? { onStart: spec.onStart } : {}) }));
        }
        onStop('tether processes', () =>
          Promise.all(
            [...started.values()].map((p) =>
              p.kill('SIGTERM', 15_000).then(
                () => say(`  ✓ ${p.name} stopped`),
                (err: unknown) => say(`  ! stopping ${p.name}: ${(err as Error).message}`),
              ),
            ),
          ),
        );
        await Promise.all([...started.values()].map((p) => p.start()));
        return started;
      },
      async startInProcess(io) {
        const tether = await startInProcessTether({ ...io, dial: temporal.dial, namespace, databaseUrl: postgres.url });
        onStop('in-process tether', () => tether.stop());
        return tether;
      },
      onStop,
      stop,
    };
    return stack;
  } catch (err) {
    await stop();
    throw err;
  }
}
