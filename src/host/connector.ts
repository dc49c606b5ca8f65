/** The host connector (what os-brick reports for this host): ip, host name, iSCSI initiator, platform. */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { HostConnector } from '../domain/types.ts';

function firstExternalIPv4(): string {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

async function iscsiInitiator(host: string): Promise<string> {
  try {
    const text = await readFile('/etc/iscsi/initiatorname.iscsi', 'utf8');
    const m = /^InitiatorName=(\S+)/m.exec(text);
    if (m?.[1]) return m[1];
  } catch {
    // no open-iscsi on this host: a stable name derived from the host name
  }
  return `iqn.2026-11.org.tether:${host}`;
}

const PLATFORMS: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ppc64: 'ppc64le', s390x: 's390x' };

export async function hostConnector(host: string, ip = process.env.TETHER_HOST_IP ?? firstExternalIPv4()): Promise<HostConnector> {
  return {
    ip,
    host,
    initiator: await iscsiInitiator(host),
    multipath: false,
    platform: PLATFORMS[os.arch()] ?? os.arch(),
    os_type: 'linux',
    do_local_attach: false,
  };
}
