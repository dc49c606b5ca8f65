/**
 * What a compute host tells about a libvirt domain tether does not know yet (`tether server import`):
 * its identity, state and disks as the live definition has them (the persistent one when it does
 * not run), and the host connector the block storage needs to record attachments of its volumes.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { diskElements } from '../../src/host/domain-disks.ts';
import { hostConnector } from '../../src/host/connector.ts';
import type { DomainInfo, LibvirtConnection } from '../../src/libvirt/binding.ts';
import type { HostConnector } from '../../src/domain/types.ts';
import { diskFacts } from './disk-resize.ts';
import { libvirtFailure } from './libvirt-failures.ts';

export interface InspectedDisk {
  target: string;
  bus: string | null;
  /** disk, cdrom, lun */
  device: string;
  serial: string | null;
  source: string | null;
  format: string | null;
  network: boolean;
}

export interface InspectedDomain {
  uuid: string;
  name: string;
  active: boolean;
  persistent: boolean;
  /** The domain has a SCSI controller (tether hot-plugs SCSI disks then; virtio otherwise). */
  scsiController: boolean;
  disks: InspectedDisk[];
  connector: HostConnector;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function inspectedDisks(domainXml: string): InspectedDisk[] {
  return diskElements(domainXml).flatMap((d) => {
    if (!d.target) return [];
    const facts = diskFacts(d.xml);
    return [{
      target: d.target,
      bus: /<target\b[^>]*\bbus=['"]([^'"]+)['"]/.exec(d.xml)?.[1] ?? null,
      device: /<disk\b[^>]*\bdevice=['"]([^'"]+)['"]/.exec(d.xml)?.[1] ?? 'disk',
      serial: d.serial,
      source: facts.source,
      format: facts.format,
      network: facts.network,
    }];
  });
}

export function createDomainInspectionActivities(deps: { libvirt: LibvirtConnection; host?: string }) {
  const { libvirt } = deps;

  async function find(domain: string): Promise<DomainInfo | null> {
    if (UUID.test(domain)) {
      const byUuid = await libvirt.lookupDomain(domain.toLowerCase());
      if (byUuid) return byUuid;
    }
    return (await libvirt.listDomains()).find((d) => d.name === domain) ?? null;
  }

  return {
    /** The domain named (by name or UUID) on this host, with its disks; a final failure when there is none. */
    async inspectDomain(input: { domain: string }): Promise<InspectedDomain> {
      try {
        const info = await find(input.domain);
        if (!info) throw ApplicationFailure.nonRetryable(`No libvirt domain ${input.domain} on host ${deps.host ?? 'this host'}`, 'InstanceNotFound');
        const xml = await libvirt.getXml(info.uuid, { inactive: !info.active });
        return {
          uuid: info.uuid,
          name: info.name,
          active: info.active,
          persistent: info.persistent,
          scsiController: /<controller\b[^>]*\btype=['"]scsi['"]/.test(xml),
          disks: inspectedDisks(xml),
          connector: await hostConnector(deps.host ?? 'localhost'),
        };
      } catch (err) {
        throw libvirtFailure(err, 'SpawnFailed');
      }
    },

    /** The domains of this host (agent discovery: those tether does not know are imported). */
    async listHostDomains(): Promise<Array<{ uuid: string; name: string; active: boolean }>> {
      return (await libvirt.listDomains()).map((d) => ({ uuid: d.uuid, name: d.name, active: d.active }));
    },
  };
}

export type DomainInspectionActivities = ReturnType<typeof createDomainInspectionActivities>;
