/** Fake activities for every activity tether's workflows call: plausible answers, no side effects. */
import type { HostConnector } from '../../../src/domain/types.ts';
import { FakeActivities } from './workflow-env.ts';

export const CONNECTOR: HostConnector = { ip: '192.0.2.1', host: 'fake-host', initiator: 'iqn.fake', multipath: false, platform: 'x86_64', os_type: 'linux', do_local_attach: false };

export interface FakeWorld {
  /** validateAttach / validateDetach answer that the instance is shelved-offloaded. */
  shelvedOffloaded?: boolean;
  /** An earlier operation on the pair is running (the attach or detach waits for it). */
  earlierOperation?: boolean;
  /** The agent predates 'connector-with-device-name': reserveDeviceName returns no connector. */
  oldAgent?: boolean;
  /** The instance's volumes (server actions). */
  volumes?: { bdmUuid: string; volumeId: string; deviceName: string | null; attachmentId: string | null; deleteOnTermination: boolean }[];
  /** exportDomain answers no domain. */
  noDomain?: boolean;
  /** validateForceDetach answers that the host is forced down. */
  hostForcedDown?: boolean;
  /** The host does not answer: detachDisk takes this many ms (longer than a force detach waits). */
  hostSilentMs?: number;
  /** The size (GiB) the block storage reports for a volume (validateExtend without a new size). */
  blockStorageSize?: () => number;
  /** Awaited by resizeDisk before it answers (a test holds the host step there). */
  beforeResize?: () => Promise<void>;
  /** Awaited by reserveDeviceName before it answers (a slow host: the attach's reservation waits). */
  beforeReserveDeviceName?: () => Promise<void>;
  /** Other servers a multiattach volume is attached to (validateExtend). */
  otherInstances?: { instanceUuid: string; host: string | null }[];
}

export function tetherFakes(world: FakeWorld = {}) {
  return new FakeActivities({
    // operations (control queue)
    isEarlierOperationRunning: async () => world.earlierOperation ?? false,
    awaitEarlierOperation: async () => ({ waitedMs: 1 }),
    awaitInstanceOperations: async () => ({ waitedMs: 0 }),
    // database (control queue)
    validateAttach: async (input: { instanceUuid: string }) => ({ instanceUuid: input.instanceUuid, host: 'fake-host', shelvedOffloaded: world.shelvedOffloaded ?? false, multiattach: false }),
    validateDetach: async () => ({ bdmUuid: 'bdm-1', attachmentId: 'att-1', deviceName: '/dev/sdb', shelvedOffloaded: world.shelvedOffloaded ?? false, wasAttached: true }),
    createShelvedBdm: async (input: { bdmUuid: string }) => ({ bdmUuid: input.bdmUuid }),
    setBdmAttachStatus: async () => undefined,
    markBdmAttached: async () => undefined,
    destroyBdm: async () => ({ destroyed: true }),
    volumeBdmsOf: async () => world.volumes ?? [],
    beginInstanceTask: async () => undefined,
    finishInstanceTask: async () => undefined,
    setInstanceHost: async () => undefined,
    markInstanceDeleted: async () => undefined,
    markInstanceActive: async () => undefined,
    markInstanceError: async () => undefined,
    takeGeneration: async () => ({ generation: 7 }),
    validateForceDetach: async () => ({
      host: 'fake-host',
      bdmUuid: 'bdm-1',
      attachmentId: 'att-1',
      deviceName: '/dev/sdb',
      hostForcedDown: world.hostForcedDown ?? false,
      hostFenced: false,
    }),
    fenceHost: async () => ({ epoch: 1 }),
    terminatePairOperations: async () => ({ terminated: [] as string[] }),
    validateExtend: async (input: { newSize: number | null }) => ({
      bdmUuid: 'bdm-1',
      size: input.newSize ?? world.blockStorageSize?.() ?? 2,
      otherInstances: input.newSize === null ? [] : (world.otherInstances ?? []),
    }),
    recordVolumeSize: async () => ({ recorded: true }),
    notifyAttachedInstances: async (input: { instances: unknown[] }) => ({ notified: input.instances.length }),
    // block storage (control queue)
    reserveVolume: async () => ({ attachmentId: 'att-1' }),
    initializeConnection: async () => ({ driverVolumeType: 'file' }),
    completeAttachment: async () => undefined,
    beginDetaching: async () => undefined,
    beginForceDetaching: async () => ({ detaching: true }),
    rollDetaching: async () => undefined,
    reReserveAttachment: async (input: { attachmentId: string | null }) => ({ attachmentId: input.attachmentId ?? 'att-new' }),
    deleteVolume: async () => ({ deleted: true }),
    deleteAttachment: async () => ({ deleted: true }),
    beginExtending: async () => undefined,
    rollExtending: async () => undefined,
    growVolume: async () => ({ outcome: 'held-by-qemu' as const }),
    finishExtending: async () => undefined,
    // the instance's host (instance-<uuid>)
    reserveDeviceName: async (input: { bdmUuid: string; withConnector?: boolean }) => {
      await world.beforeReserveDeviceName?.();
      return {
        bdmUuid: input.bdmUuid,
        deviceName: '/dev/sdb',
        diskBus: 'scsi',
        ...(input.withConnector && !world.oldAgent ? { connector: CONNECTOR } : {}),
      };
    },
    assignDeviceName: async () => ({ deviceName: '/dev/sdc' }),
    getHostConnector: async () => CONNECTOR,
    attachDisk: async () => ({ target: 'sdb', live: true }),
    detachDisk: async () => {
      if (world.hostSilentMs) await new Promise((resolve) => setTimeout(resolve, world.hostSilentMs));
      return { removed: true };
    },
    resizeDisk: async (input: { sizeGb: number }) => {
      await world.beforeResize?.();
      return { live: true, target: 'sdb', capacity: input.sizeGb * 1024 ** 3 };
    },
    powerOnDomain: async () => ({ state: 'running', active: true }),
    powerOffDomain: async () => ({ state: 'shutoff', active: false, clean: true }),
    rebootDomain: async (input: { type: string }) => ({ state: 'running', active: true, hard: input.type === 'HARD' }),
    // hosts' domains (host-<name>)
    spawnDomain: async () => ({ state: 'running' }),
    stopDomain: async () => undefined,
    exportDomain: async () => ({ xml: world.noDomain ? null : '<domain/>' }),
    importDomain: async () => ({ state: 'running' }),
    destroyDomain: async () => undefined,
  });
}

export type TetherFakes = ReturnType<typeof tetherFakes>;
