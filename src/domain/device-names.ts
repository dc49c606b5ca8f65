/** Device names, as Nova's block_device.match_device and libvirt's target naming understand them. */
import type { DiskBus } from './types.ts';

/** Nova: `^/dev/x?[a-z]?d?[a-z]+[0-9]*$` (e.g. /dev/vdb, /dev/sdc, /dev/xvdb). */
const DEVICE_PATH = /^\/dev\/x?[a-z]?d?[a-z]+[0-9]*$/;

export function isValidDevicePath(device: string): boolean {
  return DEVICE_PATH.test(device);
}

/** 'vdb' for '/dev/vdb'. */
export function stripDev(device: string): string {
  return device.startsWith('/dev/') ? device.slice(5) : device;
}

const PREFIX_BY_BUS: Record<DiskBus, string> = { virtio: 'vd', scsi: 'sd', sata: 'sd', usb: 'sd', ide: 'hd' };

export function devicePrefixForBus(bus: DiskBus): string {
  return PREFIX_BY_BUS[bus];
}

/** The bus a requested device name implies, as Nova's libvirt driver reads it (vd→virtio, sd→scsi, hd→ide). */
export function busForDevice(device: string, fallback: DiskBus): DiskBus {
  const name = stripDev(device);
  if (name.startsWith('vd')) return 'virtio';
  if (name.startsWith('sd')) return 'scsi';
  if (name.startsWith('hd')) return 'ide';
  return fallback;
}

/** a, b, …, z, aa, ab, … as in libvirt/Nova target names. */
function suffix(index: number): string {
  let s = '';
  let i = index;
  do {
    s = String.fromCharCode(97 + (i % 26)) + s;
    i = Math.floor(i / 26) - 1;
  } while (i >= 0);
  return s;
}

/** Nova caps disk devices per instance; tether uses the same order of magnitude. */
export const MAX_DISK_DEVICES = 64;

/** The first free `/dev/<prefix><letter>` on the bus, given every name in use (with or without /dev/). */
export function nextDeviceName(bus: DiskBus, used: Iterable<string>): string | null {
  const taken = new Set([...used].map(stripDev));
  const prefix = devicePrefixForBus(bus);
  for (let i = 0; i < MAX_DISK_DEVICES; i++) {
    const name = prefix + suffix(i);
    if (!taken.has(name)) return `/dev/${name}`;
  }
  return null;
}

/** The names (without /dev/) a new disk cannot take: the domain's disk targets, the live BDMs' names and the root device. */
export function deviceNamesInUse(domainTargets: Iterable<string>, liveBdms: Iterable<{ deviceName: string | null }>, rootDeviceName: string | null): Set<string> {
  const used = new Set<string>(domainTargets);
  for (const b of liveBdms) if (b.deviceName) used.add(stripDev(b.deviceName));
  if (rootDeviceName) used.add(stripDev(rootDeviceName));
  return used;
}
