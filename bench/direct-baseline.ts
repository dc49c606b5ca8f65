/**
 * The baseline: the attach and detach steps run directly, in this one process, against the same
 * PostgreSQL, volume service and libvirt, without Temporal. It calls the very activity functions the
 * workers run (createHostActivities / createDatabaseActivities / createVolumeServiceActivities), in
 * the workflows' order, and serializes the host steps of one instance with a plain in-memory mutex —
 * what the instance's task queue (one activity at a time) does in tether. Compensations run on
 * failure as in the saga (not expected in a benchmark run). What it does not have: durability
 * (a crash loses the operation half-way), retries, the ordering of attach/detach of one pair
 * (awaitEarlierOperation: a client here never overlaps its own attach and detach), and history.
 */
import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createDatabaseActivities } from '../activities/database.ts';
import { createVolumeServiceActivities } from '../activities/volume-service.ts';
import { createHostActivities } from '../activities/host.ts';
import { liveBdm } from '../src/db/block-device-mappings.ts';
import { attachRefusal } from '../src/domain/attach-rules.ts';
import type { Database } from '../src/db/database.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import type { LibvirtConnection } from '../src/libvirt/binding.ts';
import type { TetherService } from '../src/service/tether-service.ts';
import { FaultInjector } from '../faults/injector.ts';
import type { Instance, Volume } from '../src/domain/types.ts';

export interface CycleTiming {
  /** until the device name and the volume are reserved (what the API answers) */
  reservationMs: number;
  attachMs: number;
  detachMs: number;
  totalMs: number;
  /** per step, ms (direct path only: the Temporal path gets its steps from history) */
  steps?: Record<string, number>;
}

/** A per-key mutex: callers with the same key run one at a time, in arrival order. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export function createDirectRunner(deps: { db: Database; blockStorage: BlockStorage; libvirt: LibvirtConnection; host: string; service: TetherService }) {
  const faults = new FaultInjector();
  const control = { ...createDatabaseActivities({ db: deps.db, blockStorage: deps.blockStorage, faults }), ...createVolumeServiceActivities({ db: deps.db, blockStorage: deps.blockStorage, faults }) };
  const host = createHostActivities({ db: deps.db, libvirt: deps.libvirt, host: deps.host, faults });
  const perInstance = new KeyedMutex();
  // detachDisk heartbeats through the activity Context: run host steps in a (local, in-memory) activity context.
  const env = new MockActivityEnvironment();

  async function timed<T>(steps: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      steps[name] = (steps[name] ?? 0) + performance.now() - t0;
    }
  }
  const onHost = <T>(instanceUuid: string, fn: () => Promise<T>): Promise<T> => perInstance.run(instanceUuid, () => env.run(fn) as Promise<T>);

  async function attach(instance: Instance, volume: Volume, steps: Record<string, number>, reserved: () => void): Promise<void> {
    // the service layer's reads and quick checks, as TetherService.attachVolume does before it starts the workflow
    await timed(steps, 'service checks', async () => {
      const i = await deps.service.resolveServer(instance.uuid);
      const v = await deps.service.resolveVolume(volume.id);
      const refusal = attachRefusal(i, v, await liveBdm(deps.db, i.uuid, v.id), { device: null, tag: null });
      if (refusal) throw refusal;
    });
    const input = { instanceUuid: instance.uuid, volumeId: volume.id, device: null, tag: null, deleteOnTermination: false, diskBus: null, deviceType: null };
    const undo: Array<() => Promise<unknown>> = [];
    try {
      await timed(steps, 'validate', () => control.validateAttach(input));
      const bdmUuid = randomUUID();
      undo.unshift(() => control.destroyBdm({ bdmUuid }));
      const bdm = await timed(steps, 'reserveDeviceName', () => onHost(instance.uuid, () => host.reserveDeviceName({ ...input, bdmUuid, operationId: `direct-${bdmUuid}` })));
      undo.unshift(() => control.deleteAttachment({ volumeId: volume.id, instanceUuid: instance.uuid }));
      const { attachmentId } = await timed(steps, 'reserveVolume', () => control.reserveVolume({ bdmUuid, volumeId: volume.id, instanceUuid: instance.uuid }));
      reserved();
      const connector = await timed(steps, 'getHostConnector', () => onHost(instance.uuid, () => host.getHostConnector()));
      await timed(steps, 'initializeConnection', () =>
        control.initializeConnection({ bdmUuid, attachmentId, volumeId: volume.id, connector, device: bdm.deviceName }),
      );
      undo.unshift(() => onHost(instance.uuid, () => host.detachDisk({ instanceUuid: instance.uuid, volumeId: volume.id })));
      await timed(steps, 'attachDisk', () => onHost(instance.uuid, () => host.attachDisk({ instanceUuid: instance.uuid, bdmUuid, volumeId: volume.id })));
      await timed(steps, 'completeAttachment', async () => {
        await control.completeAttachment({ attachmentId });
        await control.markBdmAttached({ bdmUuid });
      });
    } catch (err) {
      for (const u of undo) await u();
      throw err;
    }
  }

  async function detach(instance: Instance, volume: Volume, steps: Record<string, number>): Promise<void> {
    await timed(steps, 'service checks (detach)', async () => {
      await deps.service.resolveServer(instance.uuid);
      await deps.service.resolveVolume(volume.id);
      if (!(await liveBdm(deps.db, instance.uuid, volume.id))) throw new Error(`volume ${volume.id} is not attached to ${instance.uuid}`);
    });
    const v = await timed(steps, 'validateDetach', () => control.validateDetach({ instanceUuid: instance.uuid, volumeId: volume.id }));
    await timed(steps, 'beginDetaching', async () => {
      await control.beginDetaching({ volumeId: volume.id });
      await control.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'detaching' });
    });
    try {
      await timed(steps, 'detachDisk', () => onHost(instance.uuid, () => host.detachDisk({ instanceUuid: instance.uuid, volumeId: volume.id })));
    } catch (err) {
      await onHost(instance.uuid, () => host.attachDisk({ instanceUuid: instance.uuid, bdmUuid: v.bdmUuid, volumeId: volume.id }));
      await control.rollDetaching({ volumeId: volume.id });
      await control.setBdmAttachStatus({ bdmUuid: v.bdmUuid, attachStatus: 'attached' });
      throw err;
    }
    await timed(steps, 'deleteAttachment', () => control.deleteAttachment({ volumeId: volume.id, instanceUuid: instance.uuid, attachmentId: v.attachmentId }));
    await timed(steps, 'destroyBdm', () => control.destroyBdm({ bdmUuid: v.bdmUuid }));
  }

  return {
    async cycle(instance: Instance, volume: Volume): Promise<CycleTiming> {
      const steps: Record<string, number> = {};
      const t0 = performance.now();
      let tReserved = t0;
      try {
        await attach(instance, volume, steps, () => (tReserved = performance.now()));
        const t1 = performance.now();
        await detach(instance, volume, steps);
        const t2 = performance.now();
        return { reservationMs: tReserved - t0, attachMs: t1 - t0, detachMs: t2 - t1, totalMs: t2 - t0, steps };
      } catch (err) {
        // leave the pair detached for the next cycle (e.g. libvirtd was restarted under us)
        if (await liveBdm(deps.db, instance.uuid, volume.id).catch(() => null)) await detach(instance, volume, {}).catch(() => undefined);
        throw err;
      }
    },
  };
}

/** One attach+detach cycle through tether (service layer → Temporal → workers), as a user drives it. */
export async function temporalCycle(service: TetherService, instance: Instance, volume: Volume): Promise<CycleTiming> {
  const t0 = performance.now();
  try {
    const started = await service.attachVolume({ server: instance.uuid, volume: volume.id });
    const t1 = performance.now();
    await service.awaitAttach(started.handle);
    const t2 = performance.now();
    const { handle } = await service.detachVolume({ server: instance.uuid, volume: volume.id });
    await service.awaitDetach(handle);
    const t3 = performance.now();
    return { reservationMs: t1 - t0, attachMs: t2 - t0, detachMs: t3 - t2, totalMs: t3 - t0 };
  } catch (err) {
    // leave the pair detached for the next cycle
    try {
      const { handle } = await service.detachVolume({ server: instance.uuid, volume: volume.id });
      await service.awaitDetach(handle);
    } catch {
      /* nothing attached, or it cannot be helped */
    }
    throw err;
  }
}
