/**
 * Storage secrets (iSCSI CHAP passwords, cephx keys) and LUKS passphrases of encrypted volumes go
 * into libvirt secrets on the host, never into disk XML, workflow history or logs. One secret of each
 * kind per volume, with a UUID derived from the volume id
 * so that a retried attach redefines the same secret and a detach knows which one to remove.
 */
import { createHash } from 'node:crypto';
import type { ConnectionInfo } from '../domain/types.ts';
import type { LibvirtConnection } from '../libvirt/binding.ts';
import { escapeXml } from '../libvirt/domain-xml.ts';

/** A stable UUID (RFC 4122 layout, version 5 style) for the volume's auth secret. */
export function authSecretUuid(volumeId: string): string {
  return derivedUuid('tether-auth-secret', volumeId);
}

/** A stable UUID for the volume's LUKS passphrase secret. */
export function encryptionSecretUuid(volumeId: string): string {
  return derivedUuid('tether-encryption-secret', volumeId);
}

function derivedUuid(kind: string, volumeId: string): string {
  const h = createHash('sha1').update(`${kind}:${volumeId}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function text(data: Record<string, unknown>, key: string): string | undefined {
  const v = data[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * Defines the libvirt secret the disk needs and returns its UUID, or undefined when the connection
 * needs none (or names a secret the host already has, as Nova's rbd_secret_uuid does).
 */
export async function ensureAuthSecret(
  libvirt: Pick<LibvirtConnection, 'defineSecret'>,
  volumeId: string,
  connectionInfo: ConnectionInfo,
): Promise<string | undefined> {
  const data = connectionInfo.data;
  const uuid = authSecretUuid(volumeId);
  const define = async (usage: string, value: string) => {
    const xml = `<secret ephemeral='no' private='yes'><uuid>${uuid}</uuid>${usage}</secret>`;
    await libvirt.defineSecret(xml, Buffer.from(value, 'utf8'));
    return uuid;
  };
  if (connectionInfo.driver_volume_type === 'iscsi' && text(data, 'auth_method')?.toUpperCase() === 'CHAP') {
    const password = text(data, 'auth_password');
    if (!password) return undefined;
    return define(`<usage type='iscsi'><target>${escapeXml(`tether-${volumeId}`)}</target></usage>`, password);
  }
  if (connectionInfo.driver_volume_type === 'rbd' && data.auth_enabled === true) {
    const key = text(data, 'secret') ?? text(data, 'key');
    if (!key) return undefined; // the host's own secret (data.secret_uuid) is used as is
    return define(`<usage type='ceph'><name>${escapeXml(`tether-${volumeId}`)}</name></usage>`, key);
  }
  return undefined;
}

/**
 * The `<volume>` usage of the volume's passphrase secret: the image path for file-backed disks,
 * else the volume id (as Nova does). libvirt allows one secret per usage.
 */
export function encryptionSecretUsage(volumeId: string, connectionInfo: ConnectionInfo): string {
  const data = connectionInfo.data;
  return text(data, 'path') ?? text(data, 'device_path') ?? volumeId;
}

/**
 * Defines (or redefines, on a retry) the libvirt passphrase secret of an encrypted volume: usage type
 * 'volume', private (its value cannot be read back through libvirt's API), and returns its UUID for
 * the disk's `<encryption>`. The passphrase goes from this call to libvirt and nowhere else.
 */
export async function defineEncryptionSecret(
  libvirt: Pick<LibvirtConnection, 'defineSecret'>,
  volumeId: string,
  connectionInfo: ConnectionInfo,
  passphrase: Buffer,
): Promise<string> {
  const uuid = encryptionSecretUuid(volumeId);
  const usage = escapeXml(encryptionSecretUsage(volumeId, connectionInfo));
  const xml = `<secret ephemeral='no' private='yes'><uuid>${uuid}</uuid><description>${escapeXml(`tether volume ${volumeId}`)}</description><usage type='volume'><volume>${usage}</volume></usage></secret>`;
  await libvirt.defineSecret(xml, passphrase);
  return uuid;
}
