/**
 * Domains on a compute host (the `host-<name>` queue): define and start, stop, export and import for
 * a move, destroy. The libvirt secrets its disks name (LUKS passphrases, CHAP passwords, cephx keys)
 * come and go with it.
 */
import type { Database } from '../../src/db/database.ts';
import { bdmConnectionInfo, liveBdm } from '../../src/db/block-device-mappings.ts';
import { getInstance } from '../../src/db/instances.ts';
import { flavorOf } from '../../src/domain/flavors.ts';
import { authSecretUuid, encryptionSecretUuid, ensureAuthSecret } from '../../src/host/disk-secrets.ts';
import type { LibvirtConnection } from '../../src/libvirt/binding.ts';
import { buildDomainXml, domainSpecFor, type DomainTemplate } from '../../src/libvirt/domain-xml.ts';
import { diskVolumesWithSecret, ensureEncryptionSecret, type VolumeEncryptionSource } from './disks.ts';
import { libvirtFailure } from './libvirt-failures.ts';
import type { FaultPoints } from '../fault-points.ts';

/** Host-level activities on the `host-<name>` queue: the life of domains. */
export function createDomainActivities(deps: {
  libvirt: LibvirtConnection;
  /** What every domain defined here gets (kernel boot, memory, console); the OS-less 64 MiB domain by default. */
  template?: DomainTemplate;
  /** With db (and volumeEncryption for encrypted disks): a domain imported from another host gets its disks' secrets here. */
  db?: Database;
  volumeEncryption?: VolumeEncryptionSource;
  host?: string;
  /** Fault and pause points around each activity's work (tests, the chaos runner). */
  faults?: FaultPoints;
}) {
  const { libvirt } = deps;
  const check = (step: string, phase: 'before' | 'after') => deps.faults?.check(step, phase);

  /**
   * Defines on this host the secrets the domain's disks name (from the BDMs' connection_info): the
   * CHAP password or cephx key of a network disk, the passphrase of an encrypted one.
   */
  async function defineDiskSecrets(instanceUuid: string, domainXml: string): Promise<void> {
    if (!deps.db) return;
    const auth = new Set(diskVolumesWithSecret(domainXml, authSecretUuid));
    const encrypted = new Set(diskVolumesWithSecret(domainXml, encryptionSecretUuid));
    for (const volumeId of new Set([...auth, ...encrypted])) {
      const bdm = await liveBdm(deps.db, instanceUuid, volumeId);
      const connectionInfo = bdm ? await bdmConnectionInfo(deps.db, bdm.uuid) : null;
      if (!connectionInfo) continue;
      if (auth.has(volumeId)) await ensureAuthSecret(libvirt, volumeId, connectionInfo);
      if (encrypted.has(volumeId)) await ensureEncryptionSecret({ libvirt, volumeEncryption: deps.volumeEncryption, host: deps.host ?? 'this host' }, volumeId, connectionInfo);
    }
  }

  return {
    /** Define and start the instance's domain (domain uuid = instance uuid) with its flavor's size; idempotent. */
    async spawnDomain(input: { instanceUuid: string; domainName: string }): Promise<{ state: string }> {
      check('spawnDomain', 'before');
      try {
        let info = await libvirt.lookupDomain(input.instanceUuid);
        if (!info) {
          const instance = deps.db ? await getInstance(deps.db, input.instanceUuid) : null;
          const flavor = instance ? flavorOf(instance.flavorId) : null;
          const size = flavor ? { memoryMiB: flavor.ram, vcpus: flavor.vcpus } : undefined;
          info = await libvirt.defineDomain(buildDomainXml(domainSpecFor(deps.template ?? {}, { uuid: input.instanceUuid, name: input.domainName }, size)));
        }
        if (!info.active) await libvirt.startDomain(input.instanceUuid);
        const after = await libvirt.lookupDomain(input.instanceUuid);
        check('spawnDomain', 'after');
        return { state: after?.state ?? 'unknown' };
      } catch (err) {
        throw libvirtFailure(err, 'SpawnFailed');
      }
    },

    /** Power the domain off, keeping its definition (shelve); idempotent. */
    async stopDomain(input: { instanceUuid: string }): Promise<void> {
      check('stopDomain', 'before');
      await libvirt.destroyDomain(input.instanceUuid);
      check('stopDomain', 'after');
    },

    /** The domain's persistent XML (with its attached disks), for a move to another host. */
    async exportDomain(input: { instanceUuid: string }): Promise<{ xml: string | null }> {
      check('exportDomain', 'before');
      if (!(await libvirt.lookupDomain(input.instanceUuid))) return { xml: null };
      return { xml: await libvirt.getXml(input.instanceUuid, { inactive: true }) };
    },

    /** Define the domain from its XML on this host (start it when asked); idempotent. */
    async importDomain(input: { instanceUuid: string; xml: string; start: boolean }): Promise<{ state: string }> {
      check('importDomain', 'before');
      try {
        let info = await libvirt.lookupDomain(input.instanceUuid);
        await defineDiskSecrets(input.instanceUuid, input.xml);
        if (!info) info = await libvirt.defineDomain(input.xml);
        if (input.start && !info.active) await libvirt.startDomain(input.instanceUuid);
        check('importDomain', 'after');
        return { state: (await libvirt.lookupDomain(input.instanceUuid))?.state ?? 'unknown' };
      } catch (err) {
        throw libvirtFailure(err, 'SpawnFailed');
      }
    },

    /**
     * Stop and undefine the domain; idempotent. The secrets its disks name — LUKS passphrases, CHAP
     * passwords, cephx keys — go with it (server delete, shelve-offload and the source of a migrate;
     * importDomain and attachDisk define them again where the disk comes back).
     */
    async destroyDomain(input: { instanceUuid: string }): Promise<void> {
      check('destroyDomain', 'before');
      const xml = (await libvirt.lookupDomain(input.instanceUuid)) ? await libvirt.getXml(input.instanceUuid, { inactive: true }) : '';
      // Secrets first: a retry after a crash past the undefine would no longer see which disks had one.
      for (const secretUuid of [authSecretUuid, encryptionSecretUuid]) {
        for (const volumeId of diskVolumesWithSecret(xml, secretUuid)) await libvirt.undefineSecret(secretUuid(volumeId));
      }
      await libvirt.destroyDomain(input.instanceUuid);
      await libvirt.undefineDomain(input.instanceUuid);
      check('destroyDomain', 'after');
    },
  };
}

export type DomainActivities = ReturnType<typeof createDomainActivities>;
