/**
 * The libvirt domain XML tether defines (by default a tiny OS-less guest that only needs to accept
 * disk hotplug; with a kernel, a guest booted directly from it), and reading the disks back out of a
 * domain's XML.
 */
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';

/** Escapes a value for use in XML text or in a quoted attribute. */
export function escapeXml(value: string | number): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** A guest booted straight from a kernel (and initramfs) on the host, no disk image. */
export interface DirectKernelBoot {
  kernel: string;
  initrd?: string;
  cmdline?: string;
}

export interface DomainSpec {
  uuid: string;
  name: string;
  memoryMiB?: number;
  vcpus?: number;
  boot?: DirectKernelBoot;
  /** A unix socket (QEMU listens on it) carrying the guest's first serial port, ttyS0. */
  serialSocket?: string;
}

/**
 * What a compute host puts into every domain it defines (TETHER_DOMAIN_* settings): nothing for the
 * default OS-less domain; a kernel, initrd and command line for a real guest, whose serial console
 * then listens on `<consoleDir>/<instance uuid>.sock`.
 */
export interface DomainTemplate {
  memoryMiB?: number;
  boot?: DirectKernelBoot;
  consoleDir?: string;
}

/** The OS-less domain's memory; a booted kernel gets more (80 MiB is the least a Debian cloud kernel boots in). */
export const DEFAULT_MEMORY_MIB = 64;
export const DEFAULT_KERNEL_BOOT_MEMORY_MIB = 128;

/**
 * The spec of an instance's domain on a host with this template; `size` (the server's flavor) gives
 * the vCPUs, and the memory when it is more than the template's.
 */
export function domainSpecFor(template: DomainTemplate, instance: { uuid: string; name: string }, size?: { memoryMiB: number; vcpus: number }): DomainSpec {
  const templateMemory = template.memoryMiB ?? (template.boot ? DEFAULT_KERNEL_BOOT_MEMORY_MIB : DEFAULT_MEMORY_MIB);
  return {
    ...instance,
    memoryMiB: Math.max(templateMemory, size?.memoryMiB ?? 0),
    ...(size ? { vcpus: size.vcpus } : {}),
    ...(template.boot ? { boot: template.boot } : {}),
    ...(template.consoleDir ? { serialSocket: path.join(template.consoleDir, `${instance.uuid}.sock`) } : {}),
  };
}

/**
 * A QEMU (TCG) domain with ACPI (required for PCI hotplug), a virtio-scsi controller for SCSI
 * disks, no disks, no graphics and no balloon; booted from `boot` when given.
 */
export function buildDomainXml({ uuid, name, memoryMiB = DEFAULT_MEMORY_MIB, vcpus = 1, boot, serialSocket }: DomainSpec): string {
  if (!Number.isInteger(memoryMiB) || memoryMiB < 1) throw new RangeError(`memoryMiB must be a positive integer, got ${memoryMiB}`);
  if (!Number.isInteger(vcpus) || vcpus < 1) throw new RangeError(`vcpus must be a positive integer, got ${vcpus}`);
  const bootElements = boot
    ? [`<kernel>${escapeXml(boot.kernel)}</kernel>`, boot.initrd && `<initrd>${escapeXml(boot.initrd)}</initrd>`, boot.cmdline && `<cmdline>${escapeXml(boot.cmdline)}</cmdline>`]
    : [];
  const os = bootElements.filter(Boolean).map((e) => `    ${e}\n`).join('');
  const serial = serialSocket
    ? `    <serial type='unix'>\n      <source mode='bind' path='${escapeXml(serialSocket)}'/>\n      <target port='0'/>\n    </serial>\n`
    : '';
  return `<domain type='qemu'>
  <name>${escapeXml(name)}</name>
  <uuid>${escapeXml(uuid)}</uuid>
  <memory unit='MiB'>${memoryMiB}</memory>
  <vcpu>${vcpus}</vcpu>
  <os>
    <type machine='pc'>hvm</type>
${os}  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='scsi' index='0' model='virtio-scsi'/>
${serial}    <memballoon model='none'/>
  </devices>
</domain>
`;
}

export interface DomainDisk {
  /** Target device name, e.g. 'sdb' (no /dev/). */
  target: string;
  bus: string;
  /** 'disk', 'cdrom' or 'lun'. */
  device: string;
  /** Source type: 'file', 'block', 'network', ... */
  type: string;
  serial?: string;
  sourceFile?: string;
  sourceDev?: string;
  sourceProtocol?: string;
  sourceName?: string;
  shareable: boolean;
  readonly: boolean;
}

type Element = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false, // keep "<serial>0123</serial>" a string
  parseAttributeValue: false,
  isArray: (_name, jpath) => jpath === 'domain.devices.disk',
});

function element(value: unknown): Element | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Element) : undefined;
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  // an element with attributes keeps its text under '#text'
  const t = element(value)?.['#text'];
  return typeof t === 'string' ? t : undefined;
}

function attr(el: Element | undefined, name: string): string | undefined {
  const v = el?.[`@${name}`];
  return typeof v === 'string' ? v : undefined;
}

/** The `<disk>` elements of a domain's XML (live or inactive). */
export function parseDomainDisks(xml: string): DomainDisk[] {
  const doc = element(parser.parse(xml));
  const disks = element(element(doc?.domain)?.devices)?.disk;
  if (!Array.isArray(disks)) return [];
  return disks.map((d): DomainDisk => {
    const disk = element(d) ?? {};
    const target = element(disk.target);
    const source = element(disk.source);
    const result: DomainDisk = {
      target: attr(target, 'dev') ?? '',
      bus: attr(target, 'bus') ?? '',
      device: attr(disk, 'device') ?? 'disk',
      type: attr(disk, 'type') ?? '',
      shareable: 'shareable' in disk,
      readonly: 'readonly' in disk,
    };
    const optional = {
      serial: text(disk.serial),
      sourceFile: attr(source, 'file'),
      sourceDev: attr(source, 'dev'),
      sourceProtocol: attr(source, 'protocol'),
      sourceName: attr(source, 'name'),
    };
    // absent optional fields are left out rather than set to undefined
    return Object.assign(result, Object.fromEntries(Object.entries(optional).filter(([, v]) => v !== undefined)));
  });
}
