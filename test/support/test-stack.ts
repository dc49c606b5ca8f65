/**
 * An in-process tether stack for integration tests: a fresh database (migrated) on the suite's
 * PostgreSQL, the suite's real Temporal dev server, the real libvirt daemon, a control-plane worker
 * and a compute agent with a unique host name and task queue, so test files never see each other.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { inject } from 'vitest';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, type Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createDatabase, type Database } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { LocalVolumeService } from '../../src/blockstorage/local-volume-service.ts';
import { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { FaultInjector } from '../../src/faults.ts';
import { TetherService } from '../../src/service/tether-service.ts';
import { createControlPlaneWorker, workflowsPath } from '../../workers/control-plane.ts';
import { workflowMetricsInterceptorsPath } from '../../src/metrics/worker-options.ts';
import { ComputeAgent } from '../../workers/compute-agent.ts';
import { listInstances } from '../../src/db/instances.ts';
import { codecDataConverter } from '../../src/security/codec-config.ts';

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
let runtimeInstalled = false;

/** Bundles the workflows once per test file. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath, workflowInterceptorModules: [workflowMetricsInterceptorsPath], logger: { log: () => undefined, info: () => undefined, warn: () => undefined, error: console.error, debug: () => undefined, trace: () => undefined } });
  return bundle;
}

export const TEST_VOLUME_ROOT = process.env.TETHER_TEST_VOLUME_DIR ?? '/var/lib/libvirt/images/tether-test';

export interface TestStack {
  id: string;
  databaseUrl: string;
  temporalAddress: string;
  controlTaskQueue: string;
  host: string;
  volumeDir: string;
  db: Database;
  client: Client;
  libvirt: LibvirtConnection;
  blockStorage: LocalVolumeService;
  faults: FaultInjector;
  service: TetherService;
  agent: ComputeAgent;
  /** Environment for a CLI or worker process that should talk to this stack. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startTestStack(options: { detachUnplugWaitMs?: number } = {}): Promise<TestStack> {
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  const id = randomBytes(4).toString('hex');
  const temporalAddress = inject('temporalAddress');
  const adminUrl = inject('databaseAdminUrl');

  const dbName = `tether_test_${id}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  const databaseUrl = url.toString();
  await migrate(databaseUrl);
  const db = createDatabase(databaseUrl, { max: 20 });

  const volumeDir = path.join(TEST_VOLUME_ROOT, id);
  await mkdir(volumeDir, { recursive: true });
  const blockStorage = new LocalVolumeService(db, { volumeDir, availabilityZone: 'nova' });
  const faults = new FaultInjector();

  const clientConnection = await Connection.connect({ address: temporalAddress });
  const client = new Client({ connection: clientConnection, namespace: 'default', dataConverter: codecDataConverter() });
  const workerConnection = await NativeConnection.connect({ address: temporalAddress });
  const controlTaskQueue = `control-${id}`;
  const host = `test-host-${id}`;

  const worker: Worker = await createControlPlaneWorker({
    connection: workerConnection,
    client,
    namespace: 'default',
    taskQueue: controlTaskQueue,
    db,
    blockStorage,
    faults,
    workflowBundle: await workflowBundle(),
  });
  const workerDone = worker.run();

  const libvirt = await LibvirtConnection.open(process.env.LIBVIRT_URI ?? 'qemu:///system');
  const agent = new ComputeAgent({
    connection: workerConnection,
    namespace: 'default',
    host,
    db,
    databaseUrl,
    libvirt,
    faults,
    detach: { unplugWaitMs: options.detachUnplugWaitMs ?? 3_000, unplugRequests: 2 },
  });
  await agent.start();

  const service = new TetherService({
    db,
    client,
    blockStorage,
    config: { controlTaskQueue, computeHost: host, availabilityZone: 'nova', defaultDiskBus: 'scsi' },
  });

  return {
    id,
    databaseUrl,
    temporalAddress,
    controlTaskQueue,
    host,
    volumeDir,
    db,
    client,
    libvirt,
    blockStorage,
    faults,
    service,
    agent,
    env: {
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: temporalAddress,
      TETHER_CONTROL_TASK_QUEUE: controlTaskQueue,
      TETHER_COMPUTE_HOST: host,
      TETHER_VOLUME_DIR: volumeDir,
    },
    async stop() {
      for (const instance of await listInstances(db)) {
        await libvirt.destroyDomain(instance.uuid).catch(() => undefined);
        await libvirt.undefineDomain(instance.uuid).catch(() => undefined);
      }
      await agent.stop();
      worker.shutdown();
      await workerDone;
      await libvirt.close();
      await workerConnection.close();
      await clientConnection.close();
      await db.end();
    },
  };
}
