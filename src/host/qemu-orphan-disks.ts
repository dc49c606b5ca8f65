/**
 * Disks QEMU holds that libvirt does not know about. When libvirtd is killed between sending
 * `device_add` to QEMU and recording the disk in the domain's live state (or, on a detach, between
 * `device_del` and processing its DEVICE_DELETED event), the restarted libvirtd reads its last saved
 * state: the live XML has no such disk, QEMU still has it. The guest keeps seeing the volume, and the
 * next hot-plug at that address fails with "Duplicate device ID". libvirt's API cannot see these
 * disks; QEMU's `query-block` can, through libvirt-qemu's monitor passthrough.
 *
 * A disk device whose id is no alias in the live XML is an orphan: it is unplugged (`device_del`) and
 * its block nodes removed (`blockdev-del`), so that libvirt and QEMU agree again — what libvirt says is
 * the truth tether reconciles to.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LibvirtConnection } from '../libvirt/binding.ts';

export interface OrphanDisk {
  /** The QEMU device id (what libvirt would call the disk's alias), e.g. scsi0-0-0-1. */
  id: string;
  /** The device's top block node, e.g. libvirt-16-format. */
  nodeName: string | null;
  /** The image file it reads, when QEMU reports one. */
  file: string | null;
}

interface BlockInfo {
  qdev?: string;
  inserted?: { 'node-name'?: string; file?: string };
}

type Monitor = Pick<LibvirtConnection, 'qemuMonitorCommand' | 'getXml'>;

const aliasesIn = (xml: string): Set<string> => new Set([...xml.matchAll(/<alias\s+name=['"]([^'"]+)['"]/g)].map((m) => m[1]!));

/** Disks of the running domain that QEMU has and its live XML does not. */
export async function findOrphanDisks(libvirt: Monitor, instanceUuid: string): Promise<OrphanDisk[]> {
  const known = aliasesIn(await libvirt.getXml(instanceUuid));
  const blocks = ((await libvirt.qemuMonitorCommand(instanceUuid, { execute: 'query-block' })) ?? []) as BlockInfo[];
  return blocks
    .filter((b) => b.qdev && b.inserted && !b.qdev.startsWith('/') && !known.has(b.qdev))
    .map((b) => ({ id: b.qdev!, nodeName: b.inserted?.['node-name'] ?? null, file: b.inserted?.file ?? null }));
}

/** Unplugs an orphan disk from QEMU and deletes its block nodes; waits until QEMU no longer lists it. */
export async function removeOrphanDisk(libvirt: Monitor, instanceUuid: string, orphan: OrphanDisk, waitMs = 5_000): Promise<void> {
  await libvirt.qemuMonitorCommand(instanceUuid, { execute: 'device_del', arguments: { id: orphan.id } }).catch((err: unknown) => {
    if (!/not found/i.test((err as Error).message)) throw err;
  });
  const deadline = Date.now() + waitMs;
  for (;;) {
    const still = ((await libvirt.qemuMonitorCommand(instanceUuid, { execute: 'query-block' })) as BlockInfo[]).some((b) => b.qdev === orphan.id);
    if (!still) break;
    if (Date.now() > deadline) throw new Error(`QEMU did not release orphan disk ${orphan.id} within ${waitMs} ms`);
    await sleep(50);
  }
  // libvirt's -blockdev layout: a format node over a storage node (libvirt-N-format / libvirt-N-storage).
  const nodes = orphan.nodeName ? [orphan.nodeName, orphan.nodeName.replace(/-format$/, '-storage')] : [];
  for (const nodeName of new Set(nodes)) {
    await libvirt.qemuMonitorCommand(instanceUuid, { execute: 'blockdev-del', arguments: { 'node-name': nodeName } }).catch(() => undefined);
  }
}

/** Finds and removes every orphan disk of a running domain; returns what it removed. */
export async function removeOrphanDisks(libvirt: Monitor, instanceUuid: string): Promise<OrphanDisk[]> {
  const orphans = await findOrphanDisks(libvirt, instanceUuid);
  for (const orphan of orphans) await removeOrphanDisk(libvirt, instanceUuid, orphan);
  return orphans;
}
