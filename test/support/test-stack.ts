/**
 * An in-process tether stack for integration tests: a fresh database (migrated) on the suite's
 * PostgreSQL, the suite's real Temporal dev server, the real libvirt daemon, a control-plane worker
 * and a compute agent with a unique host name and task queue, so test files never see each other.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { inject } from 'vitest';
import { createTestDatabase } from './test-database.ts';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, type Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createDatabase, type Database } from '../../src/db/database.ts';
import { LocalVolumeService } from '../../src/blockstorage/local-volume-service.ts';
import type { BlockStorage } from '../../src/blockstorage/block-storage.ts';
import { volumeKeyStore } from '../../src/blockstorage/index.ts';
import { LibvirtConnection } from '../../src/libvirt/binding.ts';
import type { DomainTemplate } from '../../src/libvirt/domain-xml.ts';
import { FaultInjector } from '../../faults/injector.ts';
import { TetherService } from '../../src/service/tether-service.ts';
import { createControlPlaneWorker, workflowsPath } from '../../workers/control-plane.ts';
import { workflowInterceptorModules } from '../../src/temporal/workflow-interceptor-modules.ts';
import { ComputeAgent } from '../../workers/compute-agent.ts';
import { listInstances } from '../../src/db/instances.ts';
import { clientOptions, dialOptions } from '../../src/temporal/client.ts';
import type { TemporalTlsSettings } from '../../src/config.ts';
import { codecDataConverter } from '../../src/security/codec-config.ts';

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();
let runtimeInstalled = false;

/** Bundles the workflows once per test file (and codec setting: with the codec on, failures are encoded in the sandbox too). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  const { failureConverterPath } = codecDataConverter();
  const key = failureConverterPath ?? '';
  let bundle = bundles.get(key);
  if (!bundle) {
    bundle = bundleWorkflowCode({ workflowsPath, workflowInterceptorModules: workflowInterceptorModules(), failureConverterPath, logger: { log: () => undefined, info: () => undefined, warn: () => undefined, error: console.error, debug: () => undefined, trace: () => undefined } });
    bundles.set(key, bundle);
  }
  return bundle;
}

export const TEST_VOLUME_ROOT = process.env.TETHER_TEST_VOLUME_DIR ?? '/var/lib/libvirt/images/tether-test';

export interface TestStack<B extends BlockStorage = LocalVolumeService> {
  id: string;
  databaseUrl: string;
  /** TEMPORAL_ADDRESS of the stack: one frontend, or several separated by commas. */
  temporalAddress: string;
  namespace: string;
  /** What an SDK connection of this process dials to reach the stack's Temporal (the relay's address for a cluster), with TLS. */
  dial: Awaited<ReturnType<typeof dialOptions>>;
  controlTaskQueue: string;
  host: string;
  volumeDir: string;
  db: Database;
  client: Client;
  libvirt: LibvirtConnection;
  blockStorage: B;
  faults: FaultInjector;
  service: TetherService;
  agent: ComputeAgent;
  /** Environment for a CLI or worker process that should talk to this stack. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** The block storage of a stack: made once the stack's database exists. */
export interface BlockStorageSetup<B extends BlockStorage> {
  blockStorage: B;
  volumeDir: string;
  /** Environment a CLI or worker process needs to reach the same block storage. */
  env: Record<string, string>;
  stop?: () => Promise<void>;
}

export type BlockStorageFactory<B extends BlockStorage> = (stack: { id: string; db: Database }) => Promise<BlockStorageSetup<B>>;

/**
 * tether's own volume service (or a subclass a test makes with `Service`): files under
 * TEST_VOLUME_ROOT/<id>, a master key of its own for encrypted volumes.
 */
export function localVolumesOf<S extends LocalVolumeService>(Service: new (...args: ConstructorParameters<typeof LocalVolumeService>) => S): BlockStorageFactory<S> {
  return async ({ id, db }) => {
    const volumeDir = path.join(TEST_VOLUME_ROOT, id);
    await mkdir(volumeDir, { recursive: true });
    // (also given to CLI processes through env)
    const volumeMasterKey = randomBytes(32).toString('base64');
    return {
      blockStorage: new Service(db, { volumeDir, availabilityZone: 'nova', keyStore: volumeKeyStore({}, { TETHER_VOLUME_KEY: volumeMasterKey }) }),
      volumeDir,
      env: { TETHER_VOLUME_DIR: volumeDir, TETHER_VOLUME_KEY: volumeMasterKey },
    };
  };
}

export const localVolumes: BlockStorageFactory<LocalVolumeService> = localVolumesOf(LocalVolumeService);

/** A Temporal other than the suite's dev server: e.g. a cluster (stack/temporal-cluster.ts) with mTLS. */
export interface TestTemporal {
  /** Every frontend: with several, the stack's connections go through a FrontendRelay (src/temporal/frontend-relay.ts). */
  frontends: string[];
  namespace: string;
  tls?: { caFile: string; certFile: string; keyFile: string; serverName: string };
}

export interface TestStackOptions {
  detachUnplugWaitMs?: number;
  temporal?: TestTemporal;
  /** What the compute agent puts into every domain (a real guest: test/support/guest.ts); OS-less domains by default. */
  domainTemplate?: DomainTemplate;
}

export function startTestStack(options?: TestStackOptions): Promise<TestStack>;
export function startTestStack<B extends BlockStorage>(options: TestStackOptions & { blockStorage: BlockStorageFactory<B> }): Promise<TestStack<B>>;
export async function startTestStack(options: TestStackOptions & { blockStorage?: BlockStorageFactory<BlockStorage> } = {}): Promise<TestStack<BlockStorage>> {
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  const id = randomBytes(4).toString('hex');
  const temporalAddress = options.temporal ? options.temporal.frontends.join(',') : inject('temporalAddress');
  const namespace = options.temporal?.namespace ?? 'default';
  const temporalTls: TemporalTlsSettings | undefined = options.temporal?.tls ? { enabled: true, ...options.temporal.tls } : undefined;
  const dial = await dialOptions({ temporalAddress, ...(temporalTls ? { temporalTls } : {}) });
  const databaseUrl = await createTestDatabase('tether_test', id);
  const db = createDatabase(databaseUrl, { max: 20 });

  const storage = await (options.blockStorage ?? localVolumes)({ id, db });
  const { blockStorage, volumeDir } = storage;
  const faults = new FaultInjector();

  const clientConnection = await Connection.connect(dial);
  const client = new Client({ connection: clientConnection, namespace, ...clientOptions() });
  const workerConnection = await NativeConnection.connect(dial);
  const controlTaskQueue = `control-${id}`;
  const host = `test-host-${id}`;

  const worker: Worker = await createControlPlaneWorker({
    connection: workerConnection,
    client,
    namespace,
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
    namespace,
    host,
    db,
    databaseUrl,
    libvirt,
    faults,
    detach: { unplugWaitMs: options.detachUnplugWaitMs ?? 3_000, unplugRequests: 2 },
    volumeEncryption: blockStorage,
    ...(options.domainTemplate ? { domainTemplate: options.domainTemplate } : {}),
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
    namespace,
    dial,
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
      ...(options.temporal ? { TEMPORAL_NAMESPACE: namespace } : {}),
      ...(temporalTls
        ? { TEMPORAL_TLS: 'true', TEMPORAL_TLS_CA: temporalTls.caFile!, TEMPORAL_TLS_CERT: temporalTls.certFile!, TEMPORAL_TLS_KEY: temporalTls.keyFile!, TEMPORAL_TLS_SERVER_NAME: temporalTls.serverName! }
        : {}),
      TETHER_CONTROL_TASK_QUEUE: controlTaskQueue,
      TETHER_COMPUTE_HOST: host,
      ...storage.env,
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
      await storage.stop?.();
    },
  };
}
