/**
 * Storage secrets (iSCSI CHAP passwords, cephx keys) go into libvirt secrets on the host, never into
 * disk XML, workflow history or logs. One secret per volume, with a UUID derived from the volume id
 * so that a retried attach redefines the same secret and a detach knows which one to remove.
 */
import { createHash } from 'node:crypto';
import type { ConnectionInfo } from '../domain/types.ts';
import type { LibvirtConnection } from '../libvirt/binding.ts';
import { escapeXml } from '../libvirt/domain-xml.ts';

/** A stable UUID (RFC 4122 layout, version 5 style) for the volume's auth secret. */
export function authSecretUuid(volumeId: string): string {
  const h = createHash('sha1').update(`tether-auth-secret:${volumeId}`).digest();
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
