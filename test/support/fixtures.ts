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
