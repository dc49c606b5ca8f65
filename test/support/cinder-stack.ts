/**
 * The same kind of stack as startTestStack (fresh migrated database on the suite's PostgreSQL, the
 * suite's Temporal dev server, real libvirt, a control-plane worker and a compute agent with unique
 * names) whose block storage is a real Cinder through tether's Cinder client.
 * Built from the same exported pieces: workflowBundle(), createControlPlaneWorker, ComputeAgent, TetherService.
 */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { createDatabase, type Database } from '../../src/db/database.ts';
import { migrate } from '../../src/db/migrate.ts';
import { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { FaultInjector } from '../../src/faults.ts';
import { TetherService } from '../../src/service/tether-service.ts';
import { CinderBlockStorage } from '../../src/blockstorage/cinder/cinder-block-storage.ts';
import type { CinderLog } from '../../src/blockstorage/cinder/http.ts';
import { createControlPlaneWorker } from '../../workers/control-plane.ts';
import { ComputeAgent } from '../../workers/compute-agent.ts';
import { listInstances } from '../../src/db/instances.ts';
import { workflowBundle, type TestStack } from './test-stack.ts';
import { startCinder, type CinderHandle, type CinderOptions } from './cinder.ts';

export interface CinderStack extends Omit<TestStack, 'blockStorage'> {
  blockStorage: CinderBlockStorage;
  cinder: CinderHandle;
  /** Every line tether's Cinder client logged (method, path, status, ms). */
  clientLog: string[];
}

/** The shared fixtures (runningServer, volume, storesOf) only use service, db and libvirt. */
export function asTestStack(stack: CinderStack): TestStack {
  return stack as unknown as TestStack;
}

export async function startCinderStack(options: { detachUnplugWaitMs?: number; cinder?: CinderOptions } = {}): Promise<CinderStack> {
  // Cinder (the slow part) starts while the rest is built; it is stopped again if the rest fails.
  const cinderStarting = startCinder(options.cinder);
  cinderStarting.catch(() => undefined); // awaited below; no unhandled rejection meanwhile
  try {
    return await buildStack(options, cinderStarting);
  } catch (err) {
    await (await cinderStarting.catch(() => undefined))?.stop();
    throw err;
  }
}

async function buildStack(options: { detachUnplugWaitMs?: number }, cinderStarting: Promise<CinderHandle>): Promise<CinderStack> {
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // installed already in this process
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
  const db: Database = createDatabase(databaseUrl, { max: 20 });

  const cinder = await cinderStarting;
  const clientLog: string[] = [];
  const log: CinderLog = { debug: (obj, msg) => clientLog.push(`${msg} ${JSON.stringify(obj)}`) };
  const blockStorage = new CinderBlockStorage(cinder.config(), { log });
  await blockStorage.check();
  const faults = new FaultInjector();

  const clientConnection = await Connection.connect({ address: temporalAddress });
  const client = new Client({ connection: clientConnection, namespace: 'default' });
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
    volumeDir: cinder.volumeDir,
    db,
    client,
    libvirt,
    blockStorage,
    cinder,
    clientLog,
    faults,
    service,
    agent,
    env: {
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: temporalAddress,
      TETHER_CONTROL_TASK_QUEUE: controlTaskQueue,
      TETHER_COMPUTE_HOST: host,
      ...cinder.env,
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
      await cinder.stop();
    },
  };
}
