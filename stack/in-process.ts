/**
 * tether's control-plane worker and compute agent in this very process (the integration tests'
 * way: faults injected, the agent and the block storage at hand), on the stack's Temporal and
 * database, with the workflows bundled once per process.
 */
import type { Client } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, type Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Database } from '../src/db/database.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import type { DomainTemplate } from '../src/libvirt/domain-xml.ts';
import type { TemporalConnectionOptions } from '../src/temporal/client.ts';
import { workflowInterceptorModules } from '../src/temporal/workflow-interceptor-modules.ts';
import { codecDataConverter } from '../src/security/codec-config.ts';
import { FaultInjector } from '../faults/injector.ts';
import { createControlPlaneWorker, workflowsPath } from '../workers/control-plane.ts';
import { ComputeAgent } from '../workers/compute-agent.ts';

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();
let runtimeInstalled = false;

/** Bundles the workflows once per process (and codec setting: with the codec on, failures are encoded in the sandbox too). */
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

export interface InProcessTetherOptions {
  dial: TemporalConnectionOptions;
  namespace: string;
  databaseUrl: string;
  db: Database;
  client: Client;
  blockStorage: BlockStorage;
  controlTaskQueue: string;
  /** The compute agent's host name. */
  host: string;
  libvirtUri: string;
  faults?: FaultInjector;
  detachUnplugWaitMs?: number;
  /** What the compute agent puts into every domain; OS-less domains by default. */
  domainTemplate?: DomainTemplate;
}

export interface InProcessTether {
  worker: Worker;
  agent: ComputeAgent;
  /** The compute agent's libvirt connection. */
  libvirt: LibvirtConnection;
  faults: FaultInjector;
  stop(): Promise<void>;
}

export async function startInProcessTether(o: InProcessTetherOptions): Promise<InProcessTether> {
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  const faults = o.faults ?? new FaultInjector();
  const workerConnection = await NativeConnection.connect(o.dial);
  const worker = await createControlPlaneWorker({
    connection: workerConnection,
    client: o.client,
    namespace: o.namespace,
    taskQueue: o.controlTaskQueue,
    db: o.db,
    blockStorage: o.blockStorage,
    faults,
    workflowBundle: await workflowBundle(),
  });
  const workerDone = worker.run();

  const libvirt = await LibvirtConnection.open(o.libvirtUri);
  const agent = new ComputeAgent({
    connection: workerConnection,
    namespace: o.namespace,
    host: o.host,
    db: o.db,
    databaseUrl: o.databaseUrl,
    libvirt,
    faults,
    detach: { unplugWaitMs: o.detachUnplugWaitMs ?? 3_000, unplugRequests: 2 },
    volumeEncryption: o.blockStorage,
    ...(o.domainTemplate ? { domainTemplate: o.domainTemplate } : {}),
  });
  await agent.start();

  return {
    worker,
    agent,
    libvirt,
    faults,
    async stop() {
      await agent.stop();
      worker.shutdown();
      await workerDone;
      await libvirt.close();
      await workerConnection.close();
    },
  };
}
