/**
 * Domains on a compute host (the `host-<name>` queue): define and start, stop, export and import for
 * a move, destroy. The LUKS passphrase secrets of a domain's encrypted disks come and go with it.
 */
import type { Database } from '../../src/db/database.ts';
import { bdmConnectionInfo, liveBdm } from '../../src/db/block-device-mappings.ts';
import { encryptionSecretUuid } from '../../src/host/disk-secrets.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { buildDomainXml } from '../../src/libvirt/domain-xml.ts';
import { encryptedDiskVolumes, ensureEncryptionSecret, type VolumeEncryptionSource } from './disks.ts';
import { libvirtFailure } from './libvirt-failures.ts';

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

export type DomainActivities = ReturnType<typeof createDomainActivities>;
