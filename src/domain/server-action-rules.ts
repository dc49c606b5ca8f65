/**
 * Which server actions an instance's state allows, and the task_state each one takes: Nova's
 * `check_instance_state`, `check_instance_host` and `check_instance_lock` of nova/compute/api.py,
 * with the API's wording (nova/api/openstack/common.py raise_http_conflict_for_instance_invalid_state:
 * "Cannot '<action>' instance <uuid> while it is in <vm_state|task_state> <state>").
 *
 * The task names are those the workflows take (workflows/server-power.ts, server-lifecycle.ts): the
 * API takes the task first (as Nova's API saves task_state before it casts to the compute host), the
 * workflow's beginInstanceTask then finds it taken by the same task, which it accepts.
 */
import type { Instance, VmState } from './types.ts';

export type ServerApiAction = 'start' | 'stop' | 'reboot' | 'shelve' | 'shelveOffload' | 'unshelve' | 'migrate' | 'delete';

export interface ActionRule {
  /** vm_states allowed; 'any' for delete. */
  vmStates: readonly VmState[] | 'any';
  /** task_states allowed (null: no task); Nova's default is only null. */
  taskStates: readonly (string | null)[] | 'any';
  /** The task_state the action takes while it runs (Nova's task_states). */
  task: string;
  /** Nova's check_instance_host: the instance must have a host. */
  needsHost: boolean;
  /** Nova's check_instance_lock (delete: only for non-admins, which tether applies to all). */
  refusedWhenLocked: boolean;
}

/** Nova's vm_states.ALLOW_SOFT_REBOOT and ALLOW_HARD_REBOOT. */
const SOFT_REBOOT_VM_STATES: readonly VmState[] = ['active'];
const HARD_REBOOT_VM_STATES: readonly VmState[] = ['active', 'stopped', 'paused', 'suspended', 'error'];

export const ACTION_RULES: Record<ServerApiAction, ActionRule> = {
  start: { vmStates: ['stopped'], taskStates: [null], task: 'powering-on', needsHost: true, refusedWhenLocked: true },
  stop: { vmStates: ['active', 'error'], taskStates: [null], task: 'powering-off', needsHost: true, refusedWhenLocked: true },
  reboot: { vmStates: SOFT_REBOOT_VM_STATES, taskStates: [null], task: 'rebooting', needsHost: true, refusedWhenLocked: true },
  shelve: { vmStates: ['active', 'stopped', 'paused', 'suspended'], taskStates: [null], task: 'shelving', needsHost: false, refusedWhenLocked: true },
  shelveOffload: { vmStates: ['shelved'], taskStates: [null], task: 'shelving_offloading', needsHost: false, refusedWhenLocked: true },
  unshelve: { vmStates: ['shelved', 'shelved_offloaded'], taskStates: [null], task: 'unshelving', needsHost: false, refusedWhenLocked: true },
  // Nova's cold migrate is a resize to the same flavor (vm_state active or stopped); tether moves the domain as it is
  migrate: { vmStates: ['active', 'stopped', 'paused'], taskStates: [null], task: 'migrating', needsHost: true, refusedWhenLocked: true },
  // Nova allows a delete in any state; tether waits for no running task (its sagas own the instance while they run)
  delete: { vmStates: 'any', taskStates: [null], task: 'deleting', needsHost: false, refusedWhenLocked: true },
};

/** The rule of a reboot: HARD is allowed in more vm_states (Nova's _hard_reboot; Nova also lets it replace a soft reboot in flight, tether waits for none). */
export function rebootRule(type: 'SOFT' | 'HARD'): ActionRule {
  return type === 'SOFT'
    ? ACTION_RULES.reboot
    : { ...ACTION_RULES.reboot, vmStates: HARD_REBOOT_VM_STATES, task: 'rebooting_hard' };
}

export type ActionRefusal = { type: 'InstanceInvalidState' | 'InstanceNotReady' | 'InstanceLocked'; message: string };

/** Null when `action` may run on the instance now; else Nova's refusal (all are 409s). */
export function serverActionRefusal(
  instance: Pick<Instance, 'uuid' | 'vmState' | 'taskState' | 'host' | 'locked'>,
  action: ServerApiAction,
  rule: ActionRule = ACTION_RULES[action],
): ActionRefusal | null {
  if (rule.refusedWhenLocked && instance.locked) return { type: 'InstanceLocked', message: `Instance ${instance.uuid} is locked` };
  if (rule.needsHost && !instance.host) return { type: 'InstanceNotReady', message: `Instance ${instance.uuid} is not ready` };
  if (rule.vmStates !== 'any' && !rule.vmStates.includes(instance.vmState)) {
    return { type: 'InstanceInvalidState', message: `Cannot '${action}' instance ${instance.uuid} while it is in vm_state ${instance.vmState}` };
  }
  if (rule.taskStates !== 'any' && !rule.taskStates.includes(instance.taskState)) {
    return { type: 'InstanceInvalidState', message: `Cannot '${action}' instance ${instance.uuid} while it is in task_state ${instance.taskState ?? 'None'}` };
  }
  return null;
}
