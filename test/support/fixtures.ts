/** Small helpers over a TestStack: servers that run, volumes, and reads of all three stores. */
import type { TestStack } from './test-stack.ts';
import type { Instance, Volume } from '../../src/domain/types.ts';
import { liveBdmsOfInstance } from '../../src/db/block-device-mappings.ts';
import { diskElements } from '../../src/host/domain-disks.ts';

export async function runningServer(stack: TestStack, name: string): Promise<Instance> {
  const { instance, handle } = await stack.service.createServer({ name });
  await handle.result();
  return stack.service.resolveServer(instance.uuid);
}

export function volume(stack: TestStack, name: string, options: { multiattach?: boolean } = {}): Promise<Volume> {
  return stack.service.createVolume({ name, size: 1, ...options });
}

/** What the three stores say about one instance: BDMs, the volumes' states, the disks in libvirt. */
export async function storesOf(stack: TestStack, instanceUuid: string) {
  const bdms = await liveBdmsOfInstance(stack.db, instanceUuid);
  const liveDisks = diskElements(await stack.libvirt.getXml(instanceUuid));
  const configDisks = diskElements(await stack.libvirt.getXml(instanceUuid, { inactive: true }));
  return { bdms, liveDisks, configDisks };
}

/** The attach fault points the rollback tests inject at (a step and the side of its work). */
export const ATTACH_FAULT_POINTS: Array<[string, 'before' | 'after']> = [
    ['validate', 'before'],
    ['reserveDeviceName', 'before'],
    ['reserveDeviceName', 'after'],
    ['reserveVolume', 'before'],
    ['reserveVolume', 'after'],
    ['getHostConnector', 'before'],
    ['initializeConnection', 'before'],
    ['initializeConnection', 'after'],
    ['attachDisk', 'before'],
    ['attachDisk', 'after'],
    ['completeAttachment', 'before'],
    ['completeAttachment', 'after'],
];
