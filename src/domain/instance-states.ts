/** Which instance states allow attach/detach: the rules of Nova's check_instance_state for attach_volume. */
import type { Instance, VmState } from './types.ts';

export const ATTACH_DETACH_VM_STATES: readonly VmState[] = [
  'active',
  'paused',
  'stopped',
  'resized',
  'soft-delete',
  'shelved',
  'shelved_offloaded',
];

/** Null when the operation is allowed, else the reason (Nova's wording). */
export function volumeOperationRefusal(instance: Pick<Instance, 'uuid' | 'vmState' | 'taskState'>, operation: 'attach_volume' | 'detach_volume'): string | null {
  if (!ATTACH_DETACH_VM_STATES.includes(instance.vmState)) {
    return `Cannot '${operation}' instance ${instance.uuid} while it is in vm_state ${instance.vmState}`;
  }
  if (instance.taskState !== null) {
    return `Cannot '${operation}' instance ${instance.uuid} while it is in task_state ${instance.taskState}`;
  }
  return null;
}

/** States in which the instance's domain is running or paused, so attaches affect the live domain too. */
export function affectsLiveDomain(vmState: VmState): boolean {
  return vmState === 'active' || vmState === 'paused';
}
