/**
 * A libvirt domain started behind tether's back (OS-less, TCG): a disk of a tether volume at sdb
 * (serial = the volume id) and a scratch disk of its own at sdc — what `tether server import` and
 * the agent's discovery adopt (test/import-server.test.ts, test/discover-domains.test.ts).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildDomainXml, domainSpecFor } from '../../src/libvirt/domain-xml.ts';
import type { TestStack } from './test-stack.ts';

const run = promisify(execFile);

export async function volumeFileOf(stack: TestStack, volumeId: string): Promise<string> {
  const { rows } = await stack.db.query<{ file_path: string }>('SELECT file_path FROM volumes WHERE id = $1', [volumeId]);
  return rows[0]!.file_path;
}

export function fileDisk(file: string, target: string, serial: string): string {
  return `<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/><source file='${file}'/><target dev='${target}' bus='scsi'/><serial>${serial}</serial></disk>`;
}

/** Defines and starts the domain; `scratchFiles` collects the scratch disk's file for removal afterwards. */
export async function foreignDomain(stack: TestStack, name: string, volumeId: string, scratchFiles: string[]): Promise<{ uuid: string; scratch: string }> {
  const uuid = randomUUID();
  const scratch = path.join(stack.volumeDir, `scratch-${uuid}.qcow2`);
  scratchFiles.push(scratch);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', scratch, '16M']);
  await stack.libvirt.defineDomain(buildDomainXml(domainSpecFor({}, { uuid, name })));
  await stack.libvirt.startDomain(uuid);
  await stack.libvirt.attachDevice(uuid, fileDisk(await volumeFileOf(stack, volumeId), 'sdb', volumeId), { config: true, live: true });
  await stack.libvirt.attachDevice(uuid, fileDisk(scratch, 'sdc', 'scratch-disk'), { config: true, live: true });
  return { uuid, scratch };
}

/** The QEMU process of a running domain (its pid file). */
export async function qemuPid(name: string): Promise<number> {
  return Number((await readFile(`/run/libvirt/qemu/${name}.pid`, 'utf8')).trim());
}
