/**
 * A benchmark child process: the control-plane worker or a compute agent, built from the same
 * code as workers/control-plane.ts and workers/compute-agent.ts, so that the benchmark measures
 * tether's processes the way `npm start` runs them (one Node process each). The parent talks to it
 * over the IPC channel of child_process.fork: it sends a config, gets `ready`, asks for stats,
 * and says `stop`.
 *
 * Variants (benchmark-only, for measuring candidate optimizations before they are proposed):
 *   control.workflows = 'regular-activities': bench/variants/regular-activities/ instead of workflows/
 *   control.worker: extra Worker options (pollers, cache size)
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { createDatabase } from '../src/db/database.ts';
import { createConfiguredBlockStorage } from '../src/blockstorage/index.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { createControlPlaneWorker } from '../workers/control-plane.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';
import { createDatabaseActivities } from '../activities/database.ts';
import { createVolumeServiceActivities } from '../activities/volume-service.ts';
import { createOperationActivities } from '../activities/operations.ts';
import { FaultInjector } from '../src/faults.ts';

export type WorkerTuning = Partial<
  Pick<
    WorkerOptions,
    | 'maxCachedWorkflows'
    | 'maxConcurrentWorkflowTaskPolls'
    | 'maxConcurrentActivityTaskPolls'
    | 'maxConcurrentWorkflowTaskExecutions'
    | 'maxConcurrentActivityTaskExecutions'
    | 'maxConcurrentLocalActivityExecutions'
  >
>;

export interface ControlVariant {
  workflows: 'shipped' | 'regular-activities';
  worker?: WorkerTuning;
  /** Environment that selects the block storage (e.g. a real Cinder's TETHER_BLOCK_STORAGE=cinder, CINDER_*); default: the embedded volume service. */
  blockStorageEnv?: Record<string, string>;
}

export interface AgentVariant {
  hostActivities: 'shipped';
}

export type ChildConfig =
  | { role: 'control'; temporalAddress: string; namespace: string; databaseUrl: string; volumeDir: string; taskQueue: string; variant: ControlVariant }
  | { role: 'agent'; temporalAddress: string; namespace: string; databaseUrl: string; host: string; libvirtUri: string; variant: AgentVariant };

export type ParentMessage = { type: 'config'; config: ChildConfig } | { type: 'stats'; id: number } | { type: 'idle-cpu'; id: number; ms: number } | { type: 'stop' };

export interface ChildStats {
  rssKb: number;
  heapUsedMb: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  queues?: number;
}

const variantsDir = fileURLToPath(new URL('./variants/', import.meta.url));

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const config = await new Promise<ChildConfig>((resolve) => {
    process.once('message', (m: ParentMessage) => {
      if (m.type === 'config') resolve(m.config);
    });
  });
  const connection = await NativeConnection.connect({ address: config.temporalAddress });
  const db = createDatabase(config.databaseUrl, { applicationName: `tether-bench-${config.role}` });
  let stop: () => Promise<void>;
  let queues: () => number | undefined = () => undefined;

  if (config.role === 'control') {
    const clientConnection = await Connection.connect({ address: config.temporalAddress });
    const client = new Client({ connection: clientConnection, namespace: config.namespace });
    const blockStorage = createConfiguredBlockStorage({ volumeDir: config.volumeDir, availabilityZone: 'nova' }, db, {
      env: { ...process.env, ...(config.variant.blockStorageEnv ?? {}) },
    });
    let worker: Worker;
    if (config.variant.workflows === 'shipped' && !config.variant.worker) {
      // Exactly what workers/control-plane.ts runs.
      worker = await createControlPlaneWorker({ connection, client, namespace: config.namespace, taskQueue: config.taskQueue, db, blockStorage });
    } else {
      const deps = { db, blockStorage, faults: new FaultInjector() };
      const workflowsPath =
        config.variant.workflows === 'shipped'
          ? fileURLToPath(new URL('../workflows/index.ts', import.meta.url))
          : `${variantsDir}regular-activities/index.ts`;
      worker = await Worker.create({
        connection,
        namespace: config.namespace,
        taskQueue: config.taskQueue,
        workflowsPath,
        activities: { ...createDatabaseActivities(deps), ...createVolumeServiceActivities(deps), ...createOperationActivities({ client }) },
        ...(config.variant.worker ?? {}),
      });
    }
    const done = worker.run();
    stop = async () => {
      worker.shutdown();
      await done;
      await clientConnection.close();
    };
  } else {
    const libvirt = await LibvirtConnection.open(config.libvirtUri);
    const agent = new ComputeAgent({ connection, namespace: config.namespace, host: config.host, db, databaseUrl: config.databaseUrl, libvirt });
    await agent.start();
    queues = () => agent.servedQueues().length;
    stop = async () => {
      await agent.stop();
      await libvirt.close();
    };
  }

  const stats = (): ChildStats => {
    const cpu = process.cpuUsage();
    const q = queues();
    return {
      rssKb: Math.round(process.memoryUsage.rss() / 1024),
      heapUsedMb: Math.round(process.memoryUsage().heapUsed / 1024 / 102.4) / 10,
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
      ...(q !== undefined ? { queues: q } : {}),
    };
  };

  process.on('message', (m: ParentMessage) => {
    if (m.type === 'stats') process.send!({ type: 'stats', id: m.id, stats: stats() });
    else if (m.type === 'idle-cpu') {
      const before = process.cpuUsage();
      setTimeout(() => {
        const d = process.cpuUsage(before);
        process.send!({ type: 'idle-cpu', id: m.id, cpuMs: (d.user + d.system) / 1000, stats: stats() });
      }, m.ms);
    } else if (m.type === 'stop') {
      void (async () => {
        await stop().catch((err: unknown) => console.error(`bench child ${config.role}: stop failed`, err));
        await connection.close().catch(() => undefined);
        await db.end().catch(() => undefined);
        process.exit(0);
      })();
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ type: 'ready', pid: process.pid });
}

main().catch((err: unknown) => {
  console.error('bench child failed:', err);
  process.exit(1);
});
