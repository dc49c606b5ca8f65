/**
 * What the reconciler's check needs of a host's libvirt, read by the host's agent in one activity
 * and handed to the checker on the control plane as a LibvirtReader: each instance's domain
 * (persistent and live XML) and the secrets defined (UUIDs and usages, never values). Disk XML names
 * secrets by UUID only: nothing secret travels. QEMU's own view (orphan disks) is not in it: the
 * reconciler leaves qemu-orphan-disk to `tether check`.
 */
import type { LibvirtReader } from '../checker/invariants.ts';
import type { DomainInfo, LibvirtConnection, SecretInfo } from '../libvirt/binding.ts';
import { LibvirtError, VIR_ERR_NO_DOMAIN } from '../libvirt/binding.ts';

export interface HostSnapshot {
  takenAt: string;
  domains: Array<{ info: DomainInfo; config?: string; live?: string }>;
  secrets: SecretInfo[];
}

export async function snapshotHost(libvirt: Pick<LibvirtConnection, 'lookupDomain' | 'getXml' | 'listSecrets'>, instanceUuids: string[]): Promise<HostSnapshot> {
  const takenAt = new Date().toISOString();
  const domains: HostSnapshot['domains'] = [];
  for (const uuid of instanceUuids) {
    try {
      const info = await libvirt.lookupDomain(uuid);
      if (!info) continue;
      domains.push({
        info,
        ...(info.persistent ? { config: await libvirt.getXml(uuid, { inactive: true }) } : {}),
        ...(info.active ? { live: await libvirt.getXml(uuid) } : {}),
      });
    } catch (err) {
      if (!(err instanceof LibvirtError && err.code === VIR_ERR_NO_DOMAIN)) throw err;
    }
  }
  return { takenAt, domains, secrets: await libvirt.listSecrets() };
}

export function snapshotReader(s: HostSnapshot): LibvirtReader {
  const byUuid = new Map(s.domains.map((d) => [d.info.uuid, d]));
  return {
    lookupDomain: async (uuid) => byUuid.get(uuid)?.info ?? null,
    getXml: async (uuid, options) => {
      const d = byUuid.get(uuid);
      const xml = options?.inactive ? d?.config : d?.live;
      if (xml === undefined) throw new LibvirtError(VIR_ERR_NO_DOMAIN, 0, `no ${options?.inactive ? "persistent" : "live"} XML of domain ${uuid} in the snapshot`);
      return xml;
    },
    listSecrets: async () => s.secrets,
  };
}
