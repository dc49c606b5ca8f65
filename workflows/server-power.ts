/**
 * A server's power (Nova's os-start, os-stop and reboot): each takes the instance's task_state
 * (powering-on, powering-off, rebooting, rebooting_hard) — the API took it already when it answered
 * 202 — runs one host step on the instance's own queue and sets the vm_state it leads to. When the
 * host step fails the instance returns to the vm_state it had, task_state cleared (Nova's
 * reverts_task_state). Contracts: src/domain/contracts/server-actions.ts.
 */
import type { PowerInput, RebootInput } from '../src/domain/contracts/server-actions.ts';
import { control, hostActivities } from './activity-options.ts';
import { withInstanceTask } from './server-lifecycle.ts';

export async function stopServer(input: PowerInput): Promise<void> {
  await withInstanceTask(input, 'powering-off', ['active', 'error'], input.vmState, async () => {
    await hostActivities(input.instanceUuid).forward.powerOffDomain({ instanceUuid: input.instanceUuid });
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'stopped' });
  });
}

export async function startServer(input: PowerInput): Promise<void> {
  await withInstanceTask(input, 'powering-on', ['stopped'], input.vmState, async () => {
    await hostActivities(input.instanceUuid).forward.powerOnDomain({ instanceUuid: input.instanceUuid });
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'active' });
  });
}

export async function rebootServer(input: RebootInput): Promise<void> {
  const task = input.type === 'HARD' ? 'rebooting_hard' : 'rebooting';
  const allowed = input.type === 'HARD' ? (['active', 'stopped', 'paused', 'suspended', 'error'] as const) : (['active'] as const);
  await withInstanceTask(input, task, [...allowed], input.vmState, async () => {
    await hostActivities(input.instanceUuid).forward.rebootDomain({ instanceUuid: input.instanceUuid, type: input.type });
    await control.finishInstanceTask({ instanceUuid: input.instanceUuid, vmState: 'active' });
  });
}
