/**
 * The control-plane worker: runs every workflow and the control-plane activities (tether's
 * database and the block storage) on the control task queue.
 * Run alone with `node --import tsx workers/control-plane.ts`; `npm start` runs it for you.
 */
import { fileURLToPath } from 'node:url';
import { Worker, type NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createDatabaseActivities } from '../activities/database.ts';
import { createVolumeServiceActivities } from '../activities/volume-service.ts';
import { createOperationActivities } from '../activities/operations.ts';
import { createRepairActivities } from '../activities/repair.ts';
import { createReconcileActivities } from '../activities/reconcile.ts';
import { ensureReconcileSchedule } from '../src/repair/reconcile-schedule.ts';
import { loadReconcileConfig } from '../src/repair/reconcile-config.ts';
import { createVolumeSwapActivities } from '../activities/volume-swap.ts';
import { createServerImportActivities } from '../activities/server-import.ts';
import type { Client } from '@temporalio/client';
import type { BlockStorage, VolumeAdmin } from '../src/blockstorage/block-storage.ts';
import type { Database } from '../src/db/database.ts';
import { FaultInjector } from '../faults/injector.ts';
import { CinderBlockStorage } from '../src/blockstorage/cinder/cinder-block-storage.ts';
import { activityMetricsInterceptor, metricsSinks } from '../src/metrics/worker-options.ts';
import { startMetricsFromEnv } from '../src/metrics/http.ts';
import { installSdkMetrics } from '../src/metrics/sdk-metrics.ts';
import { codecDataConverter } from '../src/security/codec-config.ts';
import { startNotificationPublisherFromEnv } from '../src/notifications/publisher.ts';
import { tracingActivityInterceptors, tracingSinks } from '../src/tracing/temporal-tracing.ts';
import { workflowInterceptorModules } from '../src/temporal/workflow-interceptor-modules.ts';
import { tracedBlockStorage } from '../src/tracing/traced-block-storage.ts';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface ControlPlaneWorkerOptions {
  connection: NativeConnection;
  /** A client for the activities that look at other workflows (operation ordering). */
  client: Client;
  namespace: string;
  taskQueue: string;
  db: Database;
  blockStorage: BlockStorage;
  faults?: FaultInjector;
  /** A pre-built bundle (tests build it once); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkflowBundleWithSourceMap;
}

export async function createControlPlaneWorker(o: ControlPlaneWorkerOptions): Promise<Worker> {
  const faults = o.faults ?? new FaultInjector();
  const deps = { db: o.db, blockStorage: tracedBlockStorage(o.blockStorage), faults };
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace,
    taskQueue: o.taskQueue,
    dataConverter: codecDataConverter(),
    ...(o.workflowBundle ? { workflowBundle: o.workflowBundle } : { workflowsPath }),
    interceptors: { activity: [...tracingActivityInterceptors(), activityMetricsInterceptor], workflowModules: workflowInterceptorModules() },
    sinks: { ...metricsSinks(), ...tracingSinks() },
    activities: {
      ...createDatabaseActivities(deps),
      ...createVolumeServiceActivities(deps),
      ...createVolumeSwapActivities(deps),
      ...createServerImportActivities(deps),
      ...createOperationActivities({ client: o.client }),
      ...createRepairActivities({ db: o.db, blockStorage: deps.blockStorage, client: o.client }),
      ...createReconcileActivities({ db: o.db, blockStorage: o.blockStorage as BlockStorage & Pick<VolumeAdmin, 'listVolumes'>, client: o.client, controlTaskQueue: o.taskQueue }),
    },
  });
}

async function main(): Promise<void> {
  const { runProcess } = await import('./process.ts');
  await runProcess('control-plane', async (ctx) => {
    installSdkMetrics(ctx.log);
    const metrics = await startMetricsFromEnv(ctx.log);
    if (metrics) ctx.onShutdown(() => metrics.close());
    const blockStorage = ctx.blockStorage();
    // Cinder: reachable, and new enough (microversion 3.44)? Fail at start, not at the first attach.
    if (blockStorage instanceof CinderBlockStorage) ctx.log.info({ microversions: await blockStorage.check() }, 'Cinder reachable');
    const worker = await createControlPlaneWorker({
      connection: await ctx.workerConnection(),
      client: await ctx.client(),
      namespace: ctx.config.temporalNamespace,
      taskQueue: ctx.config.controlTaskQueue,
      db: ctx.db(),
      blockStorage,
      faults: FaultInjector.fromEnv(),
    });
    ctx.log.info({ taskQueue: ctx.config.controlTaskQueue }, 'control-plane worker polling');
    // The reconciler's schedule (TETHER_RECONCILE_*): created or brought up to date at every start.
    const reconcile = await ensureReconcileSchedule(await ctx.client(), { controlTaskQueue: ctx.config.controlTaskQueue, config: loadReconcileConfig() });
    ctx.log.info(reconcile, 'reconciler schedule');
    ctx.onShutdown(async () => worker.shutdown());
    // The outbox's publisher (src/notifications/publisher.ts): every replica runs one, they share the rows.
    const notifications = await startNotificationPublisherFromEnv({ db: ctx.db(), databaseUrl: ctx.config.databaseUrl, log: ctx.log });
    ctx.onShutdown(() => notifications.stop());
    await worker.run();
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
