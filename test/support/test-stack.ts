/**
 * An in-process tether stack for integration tests, built by stack/builder.ts: a fresh database
 * (migrated) on the suite's PostgreSQL, the suite's real Temporal dev server (or a cluster a test
 * started), the real libvirt daemon, a control-plane worker and a compute agent in this process
 * with a unique host name and task queue, so test files never see each other.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { inject } from 'vitest';
import type { Client } from '@temporalio/client';
import type { Database } from '../../src/db/database.ts';
import { LocalVolumeService } from '../../src/blockstorage/local-volume-service.ts';
import type { BlockStorage } from '../../src/blockstorage/block-storage.ts';
import { volumeKeyStore } from '../../src/blockstorage/index.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import type { DomainTemplate } from '../../src/libvirt/domain-xml.ts';
import type { TemporalConnectionOptions } from '../../src/temporal/client.ts';
import type { FaultInjector } from '../../faults/injector.ts';
import type { TetherService } from '../../src/service/tether-service.ts';
import type { ComputeAgent } from '../../workers/compute-agent.ts';
import { listInstances } from '../../src/db/instances.ts';
import { buildStack } from '../../stack/builder.ts';

export { workflowBundle } from '../../stack/in-process.ts';

export const TEST_VOLUME_ROOT = process.env.TETHER_TEST_VOLUME_DIR ?? '/var/lib/libvirt/images/tether-test';

export interface TestStack<B extends BlockStorage = LocalVolumeService> {
  id: string;
  databaseUrl: string;
  /** TEMPORAL_ADDRESS of the stack: one frontend, or several separated by commas. */
  temporalAddress: string;
  namespace: string;
  /** What an SDK connection of this process dials to reach the stack's Temporal (the relay's address for a cluster), with TLS. */
  dial: TemporalConnectionOptions;
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
  const id = randomBytes(4).toString('hex');
  // The suite's global setup started Temporal (search attributes registered), PostgreSQL and libvirtd.
  const stack = await buildStack({
    postgres: { url: inject('databaseAdminUrl') },
    database: `tether_test_${id}`,
    keepDatabase: true,
    temporal: options.temporal
      ? { address: options.temporal.frontends.join(','), ...(options.temporal.tls ? { tls: options.temporal.tls } : {}), registered: true }
      : { address: inject('temporalAddress'), registered: true },
    namespace: options.temporal?.namespace ?? 'default',
  });
  try {
    const { db, client } = await stack.connect({ max: 20 });
    const storage = await (options.blockStorage ?? localVolumes)({ id, db });
    if (storage.stop) stack.onStop('block storage', storage.stop);
    const { blockStorage, volumeDir } = storage;
    const controlTaskQueue = `control-${id}`;
    const host = `test-host-${id}`;
    const tether = await stack.startInProcess({
      db,
      client,
      blockStorage,
      controlTaskQueue,
      host,
      libvirtUri: process.env.LIBVIRT_URI ?? 'qemu:///system',
      ...(options.detachUnplugWaitMs !== undefined ? { detachUnplugWaitMs: options.detachUnplugWaitMs } : {}),
      ...(options.domainTemplate ? { domainTemplate: options.domainTemplate } : {}),
    });
    const { libvirt } = tether;
    stack.onStop('domains', async () => {
      for (const instance of await listInstances(db)) {
        await libvirt.destroyDomain(instance.uuid).catch(() => undefined);
        await libvirt.undefineDomain(instance.uuid).catch(() => undefined);
      }
    });
    return {
      id,
      databaseUrl: stack.databaseUrl,
      temporalAddress: stack.temporal.address,
      namespace: stack.namespace,
      dial: stack.temporal.dial,
      controlTaskQueue,
      host,
      volumeDir,
      db,
      client,
      libvirt,
      blockStorage,
      faults: tether.faults,
      service: stack.service({ db, client, blockStorage, controlTaskQueue, host }),
      agent: tether.agent,
      env: {
        ...stack.env,
        TETHER_CONTROL_TASK_QUEUE: controlTaskQueue,
        TETHER_COMPUTE_HOST: host,
        ...storage.env,
      },
      stop: () => stack.stop(),
    };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}
