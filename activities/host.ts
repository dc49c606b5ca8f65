/**
 * Activities that run on a compute host, inside its compute agent: they touch the local libvirt
 * daemon (and the database for the device-name reservation). Volume steps run on the instance's own
 * task queue `instance-<uuid>` with one activity at a time, which serializes them per instance the
 * way Nova's `synchronized(instance.uuid)` does.
 */
import { removeOrphanDisks } from '../src/host/qemu-orphan-disks.ts';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database } from '../src/db/database.ts';
import { withTransaction, isUniqueViolation } from '../src/db/database.ts';
import { getInstance } from '../src/db/instances.ts';
import { bdmConnectionInfo, getLiveBdmByUuid, insertVolumeBdm, liveBdm, liveBdmsOfInstance } from '../src/db/block-device-mappings.ts';
import { busForDevice, nextDeviceName, stripDev } from '../src/domain/device-names.ts';
import { volumeOperationRefusal } from '../src/domain/instance-states.ts';
import type { AttachRequest, ConnectionInfo, DiskBus, HostConnector } from '../src/domain/types.ts';
import { hostConnector } from '../src/host/connector.ts';
import { diskBySerial, diskElements } from '../src/host/domain-disks.ts';
import { authSecretUuid, defineEncryptionSecret, encryptionSecretUuid, ensureAuthSecret } from '../src/host/disk-secrets.ts';
import { VolumeEncryptionError, type BlockStorage } from '../src/blockstorage/block-storage.ts';
import { passphraseOf } from '../src/blockstorage/volume-key-store.ts';
import { LibvirtError, type LibvirtConnection } from '../src/libvirt/binding.ts';
import { buildDiskXml } from '../src/libvirt/disk-xml.ts';
import { buildDomainXml } from '../src/libvirt/domain-xml.ts';
import type { FaultInjector } from '../src/faults.ts';
import { businessFailure } from './failures.ts';
import { recordVolumeEvent } from '../src/notifications/outbox.ts';
import { currentOperation } from '../src/notifications/operation.ts';

/** libvirt errors that say the request itself is wrong: retrying cannot help. */
const FINAL_LIBVIRT_ERRORS = new Set([
  3, // VIR_ERR_NO_SUPPORT
  8, // VIR_ERR_INVALID_ARG
  27, // VIR_ERR_XML_ERROR
  55, // VIR_ERR_OPERATION_INVALID (e.g. target already exists)
  67, // VIR_ERR_CONFIG_UNSUPPORTED
]);

function libvirtFailure(err: unknown, type: 'DiskAttachFailed' | 'DiskDetachFailed' | 'SpawnFailed'): unknown {
  if (err instanceof LibvirtError) {
    const message = `libvirt: ${err.message} (code ${err.code})`;
    return FINAL_LIBVIRT_ERRORS.has(err.code) || /Permission denied/.test(err.message)
      ? ApplicationFailure.nonRetryable(message, type)
      : ApplicationFailure.retryable(message, 'LibvirtUnavailable');
  }
  return err;
}

export interface ReserveDeviceInput extends AttachRequest {
  /** Chosen by the workflow, so that a retried or repeated reservation finds its own BDM. */
  bdmUuid: string;
  operationId: string;
  /**
   * Also read the host connector in the same activity (attaches started since the
   * 'connector-with-device-name' patch): one round trip to the host instead of two. The connector is
   * read-only host information, so reading it early changes nothing the saga must undo.
   */
  withConnector?: boolean;
}

export interface ReservedDevice {
  bdmUuid: string;
  deviceName: string;
  diskBus: DiskBus;
  /** Present when the input asked for it (withConnector). */
  connector?: HostConnector;
}

export interface DetachDiskOptions {
  /** How long to wait for the guest to release the disk before re-sending the unplug. */
  unplugWaitMs?: number;
  /** Give up (retryable failure) after this many unplug requests in one attempt. */
  unplugRequests?: number;
}

/** Where a compute host gets an encrypted volume's metadata and key: the block storage (and its key manager). */
export type VolumeEncryptionSource = Pick<BlockStorage, 'getVolumeEncryption' | 'getEncryptionKey'>;

/**
 * For a volume whose connection_info says `encrypted` (as Nova's attach does): fetch its encryption
 * metadata and key here, on the host, and put the LUKS passphrase into a libvirt secret. Returns
 * the secret's UUID for the disk's `<encryption>`, or undefined for a plain volume. The key lives
 * only in this function's memory: never returned, logged or stored.
 */
async function ensureEncryptionSecret(
  deps: { libvirt: Pick<LibvirtConnection, 'defineSecret'>; volumeEncryption: VolumeEncryptionSource | undefined; host: string },
  volumeId: string,
  connectionInfo: ConnectionInfo,
): Promise<string | undefined> {
  if (connectionInfo.data.encrypted !== true) return undefined;
  try {
    if (!deps.volumeEncryption) throw new VolumeEncryptionError(`the compute agent of host ${deps.host} was started without access to the block storage's keys`);
    const encryption = await deps.volumeEncryption.getVolumeEncryption(volumeId);
    if (!encryption) return undefined; // decrypted by the storage back end
    const key = await deps.volumeEncryption.getEncryptionKey(volumeId, encryption);
    const passphrase = passphraseOf(key);
    try {
      return await defineEncryptionSecret(deps.libvirt, volumeId, connectionInfo, passphrase);
    } finally {
      key.fill(0);
      passphrase.fill(0);
    }
  } catch (err) {
    if (err instanceof VolumeEncryptionError) {
      throw ApplicationFailure.nonRetryable(`Encrypted volume ${volumeId} cannot be attached: ${err.message}`, 'VolumeEncryptionUnavailable');
    }
    throw err;
  }
}

/** Volume ids of the domain's disks that use tether's LUKS passphrase secret. */
function encryptedDiskVolumes(domainXml: string): string[] {
  return diskElements(domainXml)
    .filter((d) => d.serial !== null && d.xml.includes(`uuid='${encryptionSecretUuid(d.serial)}'`))
    .map((d) => d.serial!);
}

export function createHostActivities(deps: {
  db: Database;
  libvirt: LibvirtConnection;
  host: string;
  faults: FaultInjector;
  detach?: DetachDiskOptions;
  /** Needed to attach encrypted volumes; without it their attach fails (non-retryable) and rolls back. */
  volumeEncryption?: VolumeEncryptionSource;
}) {
  const { db, libvirt, host, faults, volumeEncryption } = deps;
  const unplugWaitMs = deps.detach?.unplugWaitMs ?? 5_000;
  const unplugRequests = deps.detach?.unplugRequests ?? 3;

  /** Targets used by the domain's disks, persistent and live. */
  async function domainTargets(instanceUuid: string): Promise<string[]> {
    const info = await libvirt.lookupDomain(instanceUuid);
    if (!info) return [];
    const xmls = [await libvirt.getXml(instanceUuid, { inactive: true })];
    if (info.active) xmls.push(await libvirt.getXml(instanceUuid));
    return xmls.flatMap((x) => diskElements(x).map((d) => d.target).filter((t): t is string => t !== null));
  }

  /** Removes the volume's libvirt secrets (CHAP/cephx and LUKS passphrase); no-op for those that do not exist. */
  /** Removes the disks QEMU holds that the live XML does not list (src/host/qemu-orphan-disks.ts). */
  // Best effort: when QEMU's monitor cannot be asked (no libvirt-qemu, a busy monitor), the plug or
  // unplug goes on as before and a real conflict still fails it clearly.
  async function repairOrphanDisks(instanceUuid: string): Promise<void> {
    try {
      const removed = await removeOrphanDisks(libvirt, instanceUuid);
      if (removed.length > 0) {
        Context.current().log.warn('removed disks QEMU held that libvirt had lost track of', { instanceUuid, orphans: removed.map((o) => ({ id: o.id, file: o.file })) });
      }
    } catch (err) {
      Context.current().log.warn('could not look for disks QEMU holds behind libvirt', { instanceUuid, error: (err as Error).message });
    }
  }

  /** The getHostConnector step's work, wherever the workflow asks for it (its own activity, or with the device name). */
  async function readConnector(): Promise<HostConnector> {
    faults.check('getHostConnector', 'before');
    return hostConnector(host);
  }

  async function removeVolumeSecrets(volumeId: string): Promise<void> {
    await libvirt.undefineSecret(authSecretUuid(volumeId));
    await libvirt.undefineSecret(encryptionSecretUuid(volumeId));
  }

  return {
    /**
     * Create the BDM with a reserved device name: the next free name on the bus among the domain's
     * disks and the instance's live BDMs (or the requested one when free). Idempotent by BDM uuid.
     */
    async reserveDeviceName(input: ReserveDeviceInput): Promise<ReservedDevice> {
      faults.check('reserveDeviceName', 'before');
      const targets = await domainTargets(input.instanceUuid).catch((err) => {
        throw libvirtFailure(err, 'DiskAttachFailed');
      });
      let result;
      try {
        result = await withTransaction(db, async (tx) => {
          // Lock the instance row: reservations of one instance serialize even across hosts.
          const instance = await getInstance(tx, input.instanceUuid, { forUpdate: true });
          if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
          // Checked again under the lock: a delete or shelve may have started since the validation.
          const refusal = volumeOperationRefusal(instance, 'attach_volume');
          if (refusal) throw businessFailure('InstanceInvalidState', refusal);
          const existing = await liveBdm(tx, input.instanceUuid, input.volumeId);
          if (existing) {
            if (existing.uuid === input.bdmUuid && existing.deviceName && existing.diskBus) {
              return { bdmUuid: existing.uuid, deviceName: existing.deviceName, diskBus: existing.diskBus };
            }
            throw businessFailure('VolumeAlreadyAttached', `Invalid volume: volume ${input.volumeId} already attached to instance ${input.instanceUuid}.`);
          }
          const used = new Set<string>(targets);
          for (const b of await liveBdmsOfInstance(tx, input.instanceUuid)) if (b.deviceName) used.add(stripDev(b.deviceName));
          if (instance.rootDeviceName) used.add(stripDev(instance.rootDeviceName));
          let deviceName: string;
          let diskBus: DiskBus;
          if (input.device) {
            if (used.has(stripDev(input.device))) throw businessFailure('DevicePathInUse', `The supplied device path (${input.device}) is in use.`);
            deviceName = input.device;
            diskBus = busForDevice(input.device, (input.diskBus as DiskBus | null) ?? instance.defaultDiskBus);
          } else {
            diskBus = (input.diskBus as DiskBus | null) ?? instance.defaultDiskBus;
            const next = nextDeviceName(diskBus, used);
            if (!next) throw businessFailure('TooManyDiskDevices', `The maximum allowed number of disk devices on instance ${instance.uuid} has been reached.`);
            deviceName = next;
          }
          const bdm = await insertVolumeBdm(tx, {
            uuid: input.bdmUuid,
            instanceUuid: input.instanceUuid,
            volumeId: input.volumeId,
            deviceName,
            diskBus,
            deviceType: input.deviceType ?? 'disk',
            tag: input.tag,
            deleteOnTermination: input.deleteOnTermination,
            operationId: input.operationId,
          });
          await recordVolumeEvent(tx, { eventType: 'instance.volume_attach.start', operation: currentOperation(), instanceUuid: input.instanceUuid, volumeId: input.volumeId });
          return { bdmUuid: bdm.uuid, deviceName, diskBus };
        });
      } catch (err) {
        // The unique indexes caught a race that the row lock did not (should not happen): try again.
        if (isUniqueViolation(err)) throw ApplicationFailure.retryable(`Device name race: ${(err as Error).message}`, 'DeviceNameRace');
        throw err;
      }
      faults.check('reserveDeviceName', 'after');
      if (!input.withConnector) return result;
      return { ...result, connector: await readConnector() };
    },

    /** Unshelve: a BDM created while the instance was offloaded gets its device name now. Idempotent. */
    async assignDeviceName(input: { instanceUuid: string; bdmUuid: string }): Promise<{ deviceName: string }> {
      const targets = await domainTargets(input.instanceUuid).catch((err) => {
        throw libvirtFailure(err, 'DiskAttachFailed');
      });
      return withTransaction(db, async (tx) => {
        const instance = await getInstance(tx, input.instanceUuid, { forUpdate: true });
        if (!instance) throw businessFailure('InstanceNotFound', `Instance ${input.instanceUuid} could not be found.`);
        const bdms = await liveBdmsOfInstance(tx, input.instanceUuid);
        const bdm = bdms.find((b) => b.uuid === input.bdmUuid);
        if (!bdm) throw ApplicationFailure.nonRetryable(`Block device mapping ${input.bdmUuid} no longer exists`, 'DiskAttachFailed');
        if (bdm.deviceName) return { deviceName: bdm.deviceName };
        const used = new Set<string>(targets);
        for (const b of bdms) if (b.deviceName) used.add(stripDev(b.deviceName));
        if (instance.rootDeviceName) used.add(stripDev(instance.rootDeviceName));
        const bus = bdm.diskBus ?? instance.defaultDiskBus;
        const deviceName = nextDeviceName(bus, used);
        if (!deviceName) throw businessFailure('TooManyDiskDevices', `The maximum allowed number of disk devices on instance ${instance.uuid} has been reached.`);
        await tx.query('UPDATE block_device_mappings SET device_name = $2, disk_bus = $3, updated_at = now() WHERE uuid = $1', [bdm.uuid, deviceName, bus]);
        return { deviceName };
      });
    },

    async getHostConnector(): Promise<HostConnector> {
      return readConnector();
    },

    /**
     * Hot-plug the volume's disk: AFFECT_CONFIG always, AFFECT_LIVE when the domain runs; only the
     * parts not already present are attached, and presence is confirmed in the XML afterwards.
     */
    async attachDisk(input: { instanceUuid: string; bdmUuid: string; volumeId: string }): Promise<{ target: string; live: boolean }> {
      faults.check('attachDisk', 'before');
      const bdm = await getLiveBdmByUuid(db, input.bdmUuid);
      const connectionInfo = await bdmConnectionInfo(db, input.bdmUuid);
      if (!bdm?.deviceName || !connectionInfo) {
        throw ApplicationFailure.nonRetryable(`Block device mapping ${input.bdmUuid} has no device name or connection info`, 'DiskAttachFailed');
      }
      const target = stripDev(bdm.deviceName);
      try {
        const info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info) throw ApplicationFailure.nonRetryable(`Domain of instance ${input.instanceUuid} is not defined on host ${host}`, 'DiskAttachFailed');
        const present = async (live: boolean): Promise<boolean> => {
          const xml = await libvirt.getXml(input.instanceUuid, { inactive: !live });
          const byTarget = diskElements(xml).find((d) => d.target === target);
          if (byTarget && byTarget.serial !== input.volumeId) {
            throw businessFailure('DevicePathInUse', `The device ${bdm.deviceName} of the domain holds another disk (${byTarget.serial ?? 'no serial'}).`);
          }
          return byTarget !== undefined;
        };
        const needConfig = !(await present(false));
        const needLive = info.active && !(await present(true));
        // A disk QEMU kept when libvirtd died mid-hot-plug would take this one's address (and is a
        // volume the guest still sees): make QEMU agree with libvirt's XML first.
        if (needLive) await repairOrphanDisks(input.instanceUuid);
        if (needConfig || needLive) {
          const authSecretUuid = await ensureAuthSecret(libvirt, input.volumeId, connectionInfo);
          const encryptionSecretUuid = await ensureEncryptionSecret({ libvirt, volumeEncryption, host }, input.volumeId, connectionInfo);
          if (encryptionSecretUuid) faults.check('defineEncryptionSecret', 'after');
          const xml = buildDiskXml({
            connectionInfo,
            targetDev: target,
            bus: bdm.diskBus ?? 'scsi',
            deviceType: (bdm.deviceType as 'disk' | 'cdrom' | 'lun' | null) ?? 'disk',
            serial: input.volumeId,
            ...(authSecretUuid ? { authSecretUuid } : {}),
            ...(encryptionSecretUuid ? { encryptionSecretUuid } : {}),
          });
          await libvirt.attachDevice(input.instanceUuid, xml, { config: needConfig, live: needLive });
        }
        if (!(await present(false)) || (info.active && !(await present(true)))) {
          throw ApplicationFailure.retryable(`Disk ${target} not found in the domain after attach`, 'DiskAttachUnconfirmed');
        }
        faults.check('attachDisk', 'after');
        return { target, live: info.active };
      } catch (err) {
        throw libvirtFailure(err, 'DiskAttachFailed');
      }
    },

    /**
     * Remove the volume's disk (found by serial) from the persistent config and the live domain, and
     * wait until it has left the live XML: a guest may take time, or ignore the unplug, in which case
     * the unplug is re-sent and finally the attempt fails (retryable) so the workflow can retry.
     * A no-op when the disk is not there.
     */
    async detachDisk(input: { instanceUuid: string; volumeId: string }): Promise<{ removed: boolean }> {
      faults.check('detachDisk', 'before');
      const ctx = Context.current();
      try {
        const info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info) {
          // No domain, no disk: a rollback after the secrets were defined still removes them.
          await removeVolumeSecrets(input.volumeId);
          return { removed: false };
        }
        let removed = false;
        const inConfig = diskBySerial(await libvirt.getXml(input.instanceUuid, { inactive: true }), input.volumeId);
        if (inConfig) {
          await libvirt.detachDevice(input.instanceUuid, inConfig.xml, { config: true, live: false });
          removed = true;
        }
        if (info.active) {
          for (let request = 0; ; request++) {
            const live = diskBySerial(await libvirt.getXml(input.instanceUuid), input.volumeId);
            if (!live) break;
            if (request >= unplugRequests) {
              // The unplug was already retried here, as Nova's driver does; retrying the activity would only repeat it.
              throw ApplicationFailure.nonRetryable(
                `The guest did not release disk ${live.target} of volume ${input.volumeId} after ${unplugRequests} unplug requests`,
                'DiskDetachTimeout',
              );
            }
            await libvirt.detachDevice(input.instanceUuid, live.xml, { config: false, live: true }).catch((err: unknown) => {
              // "device not found" means the unplug finished between our read and this call.
              if (!(err instanceof LibvirtError && /not found/i.test(err.message))) throw err;
            });
            removed = true;
            const deadline = Date.now() + unplugWaitMs;
            while (Date.now() < deadline && diskBySerial(await libvirt.getXml(input.instanceUuid), input.volumeId)) {
              ctx.heartbeat({ request });
              await sleep(100, undefined, { signal: ctx.cancellationSignal }).catch(() => undefined);
            }
          }
        }
        // …and no disk QEMU kept behind libvirt's back (libvirtd killed during an earlier unplug or plug).
        if (info.active) await repairOrphanDisks(input.instanceUuid);
        await removeVolumeSecrets(input.volumeId);
        faults.check('detachDisk', 'after');
        return { removed };
      } catch (err) {
        throw libvirtFailure(err, 'DiskDetachFailed');
      }
    },
  };
}

/** Host-level activities on the `host-<name>` queue: the life of domains. */
export function createDomainActivities(deps: {
  libvirt: LibvirtConnection;
  memoryMiB?: number;
  /** With both: a domain imported from another host gets its encrypted disks' passphrase secrets here. */
  db?: Database;
  volumeEncryption?: VolumeEncryptionSource;
  host?: string;
}) {
  const { libvirt } = deps;

  /** Defines the passphrase secrets the domain's encrypted disks need on this host (from the BDMs' connection_info). */
  async function defineEncryptionSecrets(instanceUuid: string, domainXml: string): Promise<void> {
    const volumeIds = encryptedDiskVolumes(domainXml);
    if (volumeIds.length === 0 || !deps.db) return;
    for (const volumeId of volumeIds) {
      const bdm = await liveBdm(deps.db, instanceUuid, volumeId);
      const connectionInfo = bdm ? await bdmConnectionInfo(deps.db, bdm.uuid) : null;
      if (!connectionInfo) continue;
      await ensureEncryptionSecret({ libvirt, volumeEncryption: deps.volumeEncryption, host: deps.host ?? 'this host' }, volumeId, connectionInfo);
    }
  }

  return {
    /** Define and start the instance's domain (domain uuid = instance uuid); idempotent. */
    async spawnDomain(input: { instanceUuid: string; domainName: string }): Promise<{ state: string }> {
      try {
        let info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info) info = await libvirt.defineDomain(buildDomainXml({ uuid: input.instanceUuid, name: input.domainName, memoryMiB: deps.memoryMiB ?? 64 }));
        if (!info.active) await libvirt.startDomain(input.instanceUuid);
        const after = await libvirt.lookupDomain(input.instanceUuid);
        return { state: after?.state ?? 'unknown' };
      } catch (err) {
        throw libvirtFailure(err, 'SpawnFailed');
      }
    },

    /** Power the domain off, keeping its definition (shelve); idempotent. */
    async stopDomain(input: { instanceUuid: string }): Promise<void> {
      await libvirt.destroyDomain(input.instanceUuid);
    },

    /** The domain's persistent XML (with its attached disks), for a move to another host. */
    async exportDomain(input: { instanceUuid: string }): Promise<{ xml: string | null }> {
      if (!(await libvirt.lookupDomain(input.instanceUuid))) return { xml: null };
      return { xml: await libvirt.getXml(input.instanceUuid, { inactive: true }) };
    },

    /** Define the domain from its XML on this host (start it when asked); idempotent. */
    async importDomain(input: { instanceUuid: string; xml: string; start: boolean }): Promise<{ state: string }> {
      try {
        let info = await libvirt.lookupDomain(input.instanceUuid);
        await defineEncryptionSecrets(input.instanceUuid, input.xml);
        if (!info) info = await libvirt.defineDomain(input.xml);
        if (input.start && !info.active) await libvirt.startDomain(input.instanceUuid);
        return { state: (await libvirt.lookupDomain(input.instanceUuid))?.state ?? 'unknown' };
      } catch (err) {
        throw libvirtFailure(err, 'SpawnFailed');
      }
    },

    /**
     * Stop and undefine the domain; idempotent. The LUKS passphrase secrets of its encrypted disks go
     * with it (server delete, shelve-offload and the source of a migrate; importDomain and attachDisk
     * define them again where the disk comes back).
     */
    async destroyDomain(input: { instanceUuid: string }): Promise<void> {
      const encrypted = (await libvirt.lookupDomain(input.instanceUuid)) ? encryptedDiskVolumes(await libvirt.getXml(input.instanceUuid, { inactive: true })) : [];
      // Secrets first: a retry after a crash past the undefine would no longer see which disks had one.
      for (const volumeId of encrypted) await libvirt.undefineSecret(encryptionSecretUuid(volumeId));
      await libvirt.destroyDomain(input.instanceUuid);
      await libvirt.undefineDomain(input.instanceUuid);
    },
  };
}

export type HostActivities = ReturnType<typeof createHostActivities>;
export type DomainActivities = ReturnType<typeof createDomainActivities>;
