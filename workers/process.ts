/**
 * What every tether process shares: configuration, a logger, lazily opened connections, migrations,
 * and a clean shutdown on SIGINT/SIGTERM (second signal: exit at once).
 */
import type { NativeConnection } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import { loadConfig, type TetherConfig } from '../src/config.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { createConfiguredBlockStorage, type ConfiguredBlockStorage } from '../src/blockstorage/index.ts';
import { connectClient, connectWorker } from '../src/temporal/client.ts';
import { createLogger } from '../src/logger.ts';
import { waitForDependency } from '../src/process/dependency-wait.ts';
import { startTracingFromEnv } from '../src/tracing/tracing.ts';

export interface ProcessContext {
  config: TetherConfig;
  log: Logger;
  db(): Database;
  blockStorage(): ConfiguredBlockStorage;
  workerConnection(): Promise<NativeConnection>;
  client(): Promise<Client>;
  onShutdown(fn: () => Promise<void>): void;
  /** Retries `fn` while `what` refuses connections, up to TETHER_STARTUP_WAIT_SECONDS (src/process/dependency-wait.ts). */
  waitFor<T>(what: string, fn: () => Promise<T>): Promise<T>;
}

export async function runProcess(name: string, body: (ctx: ProcessContext) => Promise<void>): Promise<void> {
  const config = loadConfig();
  const log = createLogger(name, config.logLevel);
  // Before any client or worker is made: they install Temporal's tracing interceptors only when it is on.
  const tracing = startTracingFromEnv(name);
  if (tracing) log.info({ serviceName: tracing.serviceName, endpoint: tracing.endpoint }, 'tracing: exporting spans by OTLP');
  let db: Database | undefined;
  let blockStorage: ConfiguredBlockStorage | undefined;
  let connection: NativeConnection | undefined;
  let client: Client | undefined;
  const shutdownHooks: Array<() => Promise<void>> = [];
  let stopping = false;

  const stop = async (signal: string) => {
    if (stopping) process.exit(130);
    stopping = true;
    log.info({ signal }, 'shutting down');
    for (const fn of shutdownHooks.reverse()) await fn().catch((err) => log.error({ err }, 'shutdown hook failed'));
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  const waitFor = <T>(what: string, fn: () => Promise<T>): Promise<T> =>
    waitForDependency(what, fn, {
      timeoutMs: config.startupWaitMs,
      onRetry: (w, err, attempt) => log.warn({ err: (err as Error).message, attempt }, `${w} not reachable yet; retrying`),
    });
  const ctx: ProcessContext = {
    config,
    log,
    db() {
      db ??= createDatabase(config.databaseUrl, { applicationName: `tether-${name}` });
      return db;
    },
    blockStorage() {
      blockStorage ??= createConfiguredBlockStorage(config, ctx.db(), { log: log.child({ component: 'cinder' }) });
      return blockStorage;
    },
    async workerConnection() {
      connection ??= await waitFor('Temporal', () => connectWorker(config));
      return connection;
    },
    async client() {
      client ??= await waitFor('Temporal', () => connectClient(config));
      return client;
    },
    onShutdown(fn) {
      shutdownHooks.push(fn);
    },
    waitFor,
  };
  try {
    await waitFor('PostgreSQL', () => migrate(config.databaseUrl));
    await body(ctx);
  } catch (err) {
    log.fatal({ err }, `${name} failed`);
    process.exitCode = 1;
  } finally {
    await connection?.close().catch(() => undefined);
    await client?.connection.close().catch(() => undefined);
    await db?.end().catch(() => undefined);
    // Last: the workers have drained, so their final spans are in the processor now.
    await tracing?.shutdown().catch((err: unknown) => log.warn({ err }, 'tracing: could not flush the last spans'));
  }
}
