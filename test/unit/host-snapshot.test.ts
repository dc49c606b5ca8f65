/**
 * The reconciler's host snapshot (src/repair/host-snapshot.ts): QEMU's `query-block` of each running
 * domain travels with it, so the checker on the control plane finds qemu-orphan-disk as `tether check`
 * does on the host; deleted instances last on the host are looked up (a gone domain makes their BDMs
 * orphan-bdm the reconciler may repair). Fake libvirt: no stack.
 */
import { describe, expect, it } from 'vitest';
import { snapshotHost, snapshotReader } from '../../src/repair/host-snapshot.ts';
import { findOrphanDisks } from '../../src/host/qemu-orphan-disks.ts';
import type { DomainInfo } from '../../src/libvirt/binding.ts';

const info = (uuid: string): DomainInfo => ({ uuid, name: uuid, state: 'running' as DomainInfo['state'], active: true, persistent: true });
const live = `<domain><devices><disk type='file' device='disk'><target dev='sdb' bus='scsi'/><serial>v-1</serial><alias name='scsi0-0-0-1'/></disk></devices></domain>`;
const blocks = [
  { qdev: 'scsi0-0-0-1', inserted: { 'node-name': 'libvirt-1-format', file: '/v/v-1' } },
  { qdev: 'scsi0-0-0-40', inserted: { 'node-name': 'drift-40-format', file: '/v/v-2' } },
];

function fakeLibvirt(domains: Record<string, DomainInfo>) {
  const asked: string[] = [];
  return {
    asked,
    lookupDomain: async (uuid: string) => domains[uuid] ?? null,
    getXml: async () => live,
    listSecrets: async () => [],
    qemuMonitorCommand: async (uuid: string, c: { execute: string }) => {
      asked.push(`${uuid} ${c.execute}`);
      return blocks;
    },
  };
}

describe("the reconciler's host snapshot", () => {
  it("carries QEMU's query-block of running domains: the checker's orphan search works on it", async () => {
    const libvirt = fakeLibvirt({ 'i-1': info('i-1') });
    const snapshot = await snapshotHost(libvirt, ['i-1']);
    expect(libvirt.asked).toEqual(['i-1 query-block']);
    const reader = JSON.parse(JSON.stringify(snapshot)) as typeof snapshot; // it travels as JSON
    expect(await findOrphanDisks(snapshotReader(reader) as Parameters<typeof findOrphanDisks>[0], 'i-1')).toEqual([
      { id: 'scsi0-0-0-40', nodeName: 'drift-40-format', file: '/v/v-2' },
    ]);
  });

  it('answers nothing but query-block, and offers no monitor when the agent sent no QEMU view (an older agent)', async () => {
    const reader = snapshotReader(await snapshotHost(fakeLibvirt({ 'i-1': info('i-1') }), ['i-1']));
    await expect(reader.qemuMonitorCommand!('i-1', { execute: 'device_del' })).rejects.toThrow(/no answer to device_del/);
    const old = snapshotReader({ takenAt: new Date().toISOString(), domains: [{ info: info('i-1'), live }], secrets: [] });
    expect(old.qemuMonitorCommand).toBeUndefined();
  });

  it("looks up deleted instances' domains without asking QEMU about them; a gone one is absent", async () => {
    const libvirt = fakeLibvirt({ 'i-1': info('i-1'), 'gone-but-defined': info('gone-but-defined') });
    const snapshot = await snapshotHost(libvirt, ['i-1'], { deleted: ['gone-but-defined', 'gone'] });
    expect(snapshot.deletedLookedUp).toEqual(['gone-but-defined', 'gone']);
    expect(snapshot.domains.map((d) => d.info.uuid)).toEqual(['i-1', 'gone-but-defined']);
    expect(libvirt.asked).toEqual(['i-1 query-block']);
    const reader = snapshotReader(snapshot);
    expect(await reader.lookupDomain('gone')).toBeNull();
    expect(await reader.lookupDomain('gone-but-defined')).not.toBeNull();
  });
});
