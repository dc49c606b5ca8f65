/**
 * What the reconciler's check needs of a host's libvirt, read by the host's agent in one activity
 * and handed to the checker on the control plane as a LibvirtReader: each instance's domain
 * (persistent and live XML), QEMU's own list of block devices of each running domain (`query-block`,
 * for qemu-orphan-disk), whether the domains of deleted instances last on the host are gone (for
 * orphan-bdm), and the secrets defined (UUIDs and usages, never values). Disk XML names secrets by
 * UUID only: nothing secret travels.
 */
import type { LibvirtReader } from '../checker/invariants.ts';
import type { DomainInfo, LibvirtConnection, SecretInfo } from '../libvirt/binding.ts';
import { LibvirtError, VIR_ERR_NO_DOMAIN } from '../libvirt/binding.ts';

export interface HostSnapshot {
  takenAt: string;
  domains: Array<{ info: DomainInfo; config?: string; live?: string; /** QEMU's `query-block` answer (running domains). */ qemuBlocks?: unknown }>;
  secrets: SecretInfo[];
  /** Deleted instances last on the host (with live volume BDMs) whose domains were looked up: absent from `domains` = gone. */
  deletedLookedUp?: string[];
}

type SnapshotLibvirt = Pick<LibvirtConnection, 'lookupDomain' | 'getXml' | 'listSecrets'> & Partial<Pick<LibvirtConnection, 'qemuMonitorCommand'>>;

export async function snapshotHost(libvirt: SnapshotLibvirt, instanceUuids: string[], o: { deleted?: string[] } = {}): Promise<HostSnapshot> {
  const takenAt = new Date().toISOString();
  const domains: HostSnapshot['domains'] = [];
  const live = new Set(instanceUuids);
  for (const uuid of [...instanceUuids, ...(o.deleted ?? []).filter((u) => !live.has(u))]) {
    try {
      const info = await libvirt.lookupDomain(uuid);
      if (!info) continue;
      const liveXml = info.active ? await libvirt.getXml(uuid) : undefined;
      // Right after the live XML: a disk QEMU lists that this XML does not is an orphan (checked twice by the reconciler).
      const qemuBlocks = info.active && live.has(uuid) && libvirt.qemuMonitorCommand
        ? await libvirt.qemuMonitorCommand(uuid, { execute: 'query-block' }).catch(() => undefined)
        : undefined;
      domains.push({
        info,
        ...(info.persistent ? { config: await libvirt.getXml(uuid, { inactive: true }) } : {}),
        ...(liveXml !== undefined ? { live: liveXml } : {}),
        ...(qemuBlocks !== undefined ? { qemuBlocks } : {}),
      });
    } catch (err) {
      if (!(err instanceof LibvirtError && err.code === VIR_ERR_NO_DOMAIN)) throw err;
    }
  }
  return { takenAt, domains, secrets: await libvirt.listSecrets(), ...(o.deleted ? { deletedLookedUp: o.deleted } : {}) };
}

export function snapshotReader(s: HostSnapshot): LibvirtReader {
  const byUuid = new Map(s.domains.map((d) => [d.info.uuid, d]));
  const withQemu = s.domains.some((d) => d.qemuBlocks !== undefined);
  return {
    lookupDomain: async (uuid) => byUuid.get(uuid)?.info ?? null,
    getXml: async (uuid, options) => {
      const d = byUuid.get(uuid);
      const xml = options?.inactive ? d?.config : d?.live;
      if (xml === undefined) throw new LibvirtError(VIR_ERR_NO_DOMAIN, 0, `no ${options?.inactive ? "persistent" : "live"} XML of domain ${uuid} in the snapshot`);
      return xml;
    },
    listSecrets: async () => s.secrets,
    // Only `query-block`, answered from the snapshot (an agent that sent none: no QEMU check).
    ...(withQemu
      ? {
          qemuMonitorCommand: async (uuid: string, command: { execute: string }) => {
            const blocks = byUuid.get(uuid)?.qemuBlocks;
            if (command.execute !== 'query-block' || blocks === undefined) throw new Error(`the snapshot has no answer to ${command.execute} for domain ${uuid}`);
            return blocks;
          },
        }
      : {}),
  };
}
