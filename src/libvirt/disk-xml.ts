/**
 * The libvirt `<disk>` element for a volume, from the connection_info a block storage driver
 * returns (the shapes Cinder drivers produce), rendered the way Nova's libvirt volume drivers
 * do. Credentials never go into the XML: CHAP passwords, cephx keys and LUKS passphrases live
 * in libvirt secrets, referenced by UUID.
 */
import { createHash } from 'node:crypto';
import { posix as path } from 'node:path';
import { escapeXml } from './domain-xml.ts';

export interface ConnectionInfo {
  driver_volume_type: string;
  data: Record<string, unknown>;
  serial?: string;
  /** Set by Cinder for a multiattach volume: the disk is then shareable. */
  multiattach?: boolean;
}

export interface DiskSpec {
  connectionInfo: ConnectionInfo;
  /** Target device name, e.g. 'sdb' or 'vdb' (no /dev/). */
  targetDev: string;
  bus: 'virtio' | 'scsi' | 'ide' | 'sata' | 'usb';
  deviceType?: 'disk' | 'cdrom' | 'lun';
  /** The volume id; becomes the disk's `<serial>`. */
  serial: string;
  shareable?: boolean;
  readonly?: boolean;
  /** libvirt secret holding the CHAP password (iscsi) or the cephx key (rbd). */
  authSecretUuid?: string;
  /** libvirt secret holding the LUKS passphrase. */
  encryptionSecretUuid?: string;
}

/** Where NFS shares are mounted when connection_info has neither device_path nor mount_point_base. */
export const DEFAULT_NFS_MOUNT_POINT_BASE = '/var/lib/tether/mnt';

const FORMATS = new Set(['raw', 'qcow2']);

/** What goes inside `<disk>` before the common elements: its type, driver format and source. */
interface Source {
  type: 'file' | 'block' | 'network';
  format: string;
  /** The `<source>` element and, for network disks, `<auth>`. */
  xml: string;
}

export function buildDiskXml(spec: DiskSpec): string {
  if (!/^[a-z]+[a-z0-9]*$/.test(spec.targetDev)) {
    throw new Error(`targetDev must be a bare device name such as 'sdb', got '${spec.targetDev}'`);
  }
  const { connectionInfo } = spec;
  const data = connectionInfo.data ?? {};
  const source = diskSource(connectionInfo.driver_volume_type, data, spec);
  const device = spec.deviceType ?? 'disk';
  const readonly = spec.readonly === true || data.access_mode === 'ro' || device === 'cdrom';
  const shareable = spec.shareable === true || connectionInfo.multiattach === true;

  const driver = [`name='qemu'`, `type='${escapeXml(source.format)}'`, `cache='none'`];
  if (data.discard === true) driver.push(`discard='unmap'`);

  const lines = [
    `<disk type='${source.type}' device='${escapeXml(device)}'>`,
    `  <driver ${driver.join(' ')}/>`,
    source.xml,
    `  <target dev='${escapeXml(spec.targetDev)}' bus='${escapeXml(spec.bus)}'/>`,
    `  <serial>${escapeXml(spec.serial)}</serial>`,
  ];
  if (readonly) lines.push('  <readonly/>');
  if (shareable) lines.push('  <shareable/>');
  if (spec.encryptionSecretUuid) {
    lines.push(
      `  <encryption format='luks'>`,
      `    <secret type='passphrase' uuid='${escapeXml(spec.encryptionSecretUuid)}'/>`,
      `  </encryption>`,
    );
  }
  lines.push('</disk>');
  return lines.join('\n') + '\n';
}

function diskSource(type: string, data: Record<string, unknown>, spec: DiskSpec): Source {
  switch (type) {
    case 'file': // tether's own local volumes: an image file on this host
      return fileSource(requiredString(data, 'path', type), format(data, type));
    case 'local': // a block device already present on the host (os-brick's "local" connector)
      return {
        type: 'block',
        format: 'raw',
        xml: `  <source dev='${escapeXml(requiredString(data, 'device_path', type))}'/>`,
      };
    case 'nfs':
      return fileSource(nfsPath(data), format(data, type));
    case 'iscsi':
      return iscsiSource(data, spec);
    case 'rbd':
      return rbdSource(data, spec);
    default:
      throw new Error(`Unsupported driver_volume_type '${type}'`);
  }
}

function fileSource(file: string, fmt: string): Source {
  return { type: 'file', format: fmt, xml: `  <source file='${escapeXml(file)}'/>` };
}

/**
 * Nova mounts each share at <mount_point_base>/<md5 of the export> and, once mounted, records
 * the image's path as data.device_path.
 */
function nfsPath(data: Record<string, unknown>): string {
  const devicePath = optionalString(data, 'device_path');
  if (devicePath) return devicePath;
  const share = requiredString(data, 'export', 'nfs');
  const name = requiredString(data, 'name', 'nfs');
  if (name.includes('/') || name === '..' || name === '.') throw new Error(`nfs connection_info name must be a file name, got '${name}'`);
  const base = optionalString(data, 'mount_point_base') ?? DEFAULT_NFS_MOUNT_POINT_BASE;
  return path.join(base, createHash('md5').update(share).digest('hex'), name);
}

/** QEMU's own iSCSI initiator (Nova's LibvirtNetVolumeDriver): no host-side session needed. */
function iscsiSource(data: Record<string, unknown>, spec: DiskSpec): Source {
  const iqn = requiredString(data, 'target_iqn', 'iscsi');
  const lun = data.target_lun ?? 0;
  if (typeof lun !== 'number' && typeof lun !== 'string') throw new Error('iscsi connection_info target_lun must be a number');
  const { host, port } = parsePortal(requiredString(data, 'target_portal', 'iscsi'), 3260);
  const lines = [
    `  <source protocol='iscsi' name='${escapeXml(`${iqn}/${lun}`)}'>`,
    `    <host name='${escapeXml(host)}' port='${escapeXml(port)}'/>`,
    '  </source>',
  ];
  if (data.auth_method === 'CHAP') {
    lines.push(authXml(requiredString(data, 'auth_username', 'iscsi'), 'iscsi', secretUuid(spec, undefined, 'iSCSI CHAP')));
  } else if (data.auth_method !== undefined && data.auth_method !== null && data.auth_method !== 'None') {
    throw new Error(`Unsupported iscsi auth_method '${String(data.auth_method)}'`);
  }
  return { type: 'network', format: 'raw', xml: lines.join('\n') };
}

/** Ceph RBD through QEMU's librbd (Nova's LibvirtNetVolumeDriver with protocol 'rbd'). */
function rbdSource(data: Record<string, unknown>, spec: DiskSpec): Source {
  const name = requiredString(data, 'name', 'rbd');
  const hosts = stringList(data.hosts, 'hosts');
  const ports = stringList(data.ports, 'ports');
  const lines = [`  <source protocol='rbd' name='${escapeXml(name)}'>`];
  hosts.forEach((host, i) => {
    const port = ports[i];
    lines.push(port ? `    <host name='${escapeXml(host)}' port='${escapeXml(port)}'/>` : `    <host name='${escapeXml(host)}'/>`);
  });
  lines.push('  </source>');
  if (data.auth_enabled === true) {
    const secretType = optionalString(data, 'secret_type') ?? 'ceph';
    const uuid = secretUuid(spec, optionalString(data, 'secret_uuid'), 'cephx');
    lines.push(authXml(requiredString(data, 'auth_username', 'rbd'), secretType, uuid));
  }
  return { type: 'network', format: 'raw', xml: lines.join('\n') };
}

function authXml(username: string, secretType: string, uuid: string): string {
  return [
    `  <auth username='${escapeXml(username)}'>`,
    `    <secret type='${escapeXml(secretType)}' uuid='${escapeXml(uuid)}'/>`,
    '  </auth>',
  ].join('\n');
}

function secretUuid(spec: DiskSpec, fromData: string | undefined, what: string): string {
  const uuid = spec.authSecretUuid ?? fromData;
  if (!uuid) throw new Error(`${what} authentication needs a libvirt secret: set authSecretUuid`);
  return uuid;
}

/** 'host:port', '[v6addr]:port' or a bare host. */
function parsePortal(portal: string, defaultPort: number): { host: string; port: string } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(portal);
  if (v6) return { host: v6[1]!, port: v6[2] ?? String(defaultPort) };
  const parts = portal.split(':');
  if (parts.length === 2 && /^\d+$/.test(parts[1]!)) return { host: parts[0]!, port: parts[1]! };
  return { host: portal, port: String(defaultPort) }; // a bare host name or IPv6 address
}

function format(data: Record<string, unknown>, type: string): string {
  const fmt = optionalString(data, 'format') ?? 'raw';
  if (!FORMATS.has(fmt)) throw new Error(`Unsupported ${type} volume format '${fmt}'`);
  return fmt;
}

function optionalString(data: Record<string, unknown>, key: string): string | undefined {
  const v = data[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function requiredString(data: Record<string, unknown>, key: string, type: string): string {
  const v = optionalString(data, key);
  if (v === undefined) throw new Error(`${type} connection_info lacks data.${key}`);
  return v;
}

function stringList(value: unknown, key: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`rbd connection_info data.${key} must be a list`);
  return value.map(String);
}
