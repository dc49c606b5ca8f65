/**
 * Nova's instance actions, as tether records them: every workflow run on a server is one action,
 * keyed by the request id its caller got (`x-openstack-request-id`), which the service stores in the
 * run's memo with who asked; each step of the run is one event. This file holds the names: Nova's
 * action name of each workflow type and Nova's event name of each step.
 */

/** What the service puts in the memo of every workflow it starts (read back by the instance actions). */
export interface ActionMemo {
  /** The request id the client got (`req-<uuid>`): the action's id. */
  requestId: string;
  /** Who asked: Nova's user_id and project_id of the action. */
  userId: string;
  projectId: string;
}

/** Nova's action name (nova/compute/instance_actions.py) of each workflow type that acts on a server. */
export const ACTION_OF_WORKFLOW: Readonly<Record<string, string>> = {
  attachVolume: 'attach_volume',
  detachVolume: 'detach_volume',
  forceDetachVolume: 'detach_volume',
  extendVolume: 'extend_volume',
  swapVolume: 'swap_volume',
  createServer: 'create',
  bootServer: 'create',
  deleteServer: 'delete',
  shelveServer: 'shelve',
  shelveOffloadServer: 'shelveOffload',
  unshelveServer: 'unshelve',
  migrateServer: 'migrate',
  startServer: 'start',
  stopServer: 'stop',
  rebootServer: 'reboot',
};

/** Nova's action name of a workflow type; an unknown type keeps its own name. */
export function actionOfWorkflow(workflowType: string): string {
  return ACTION_OF_WORKFLOW[workflowType] ?? workflowType;
}

/**
 * Nova's event names where a step does what Nova's event of that name does (the compute manager's
 * wrap_instance_event names); the other steps are `compute_` + the step's name in snake case.
 */
const NOVA_EVENT_OF_STEP: Readonly<Record<string, string>> = {
  reserveDeviceName: 'compute_reserve_block_device_name',
  attachDisk: 'compute_attach_volume',
  detachDisk: 'compute_detach_volume',
  resizeDisk: 'compute_extend_volume',
  spawnDomain: 'compute_build_and_run_instance',
  destroyDomain: 'compute_terminate_instance',
  stopDomain: 'compute_stop_instance',
  startDomain: 'compute_start_instance',
  rebootDomain: 'compute_reboot_instance',
  powerOffDomain: 'compute_stop_instance',
  powerOnDomain: 'compute_start_instance',
};

export function snakeCase(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^A-Za-z0-9]+/g, '_').toLowerCase();
}

/**
 * The event name of a step. A compensation (a step run to undo an earlier one) is
 * `compute_rollback_<step>`, so that the rollback of a detach reads as such and not as an attach.
 */
export function eventOfStep(step: string, compensation = false): string {
  if (compensation) return `compute_rollback_${snakeCase(step)}`;
  return NOVA_EVENT_OF_STEP[step] ?? `compute_${snakeCase(step)}`;
}

/** Nova's event results. */
export type EventResult = 'Success' | 'Error';

/** One step of an action, as Nova's instance action event. */
export interface ActionEvent {
  event: string;
  startTime: string;
  /** Null while it runs. */
  finishTime: string | null;
  /** Null while it runs. */
  result: EventResult | null;
  /** Why it failed, in words a person can act on (null unless it failed). */
  details: string | null;
  /** The compute host it ran for (null when the server had none). */
  host: string | null;
}

/** One workflow run on a server, as Nova's instance action. */
export interface InstanceAction {
  action: string;
  instanceUuid: string;
  requestId: string;
  userId: string | null;
  projectId: string | null;
  startTime: string;
  /** When it last changed: its close time, or its start while it runs. */
  updatedAt: string;
  /** Nova's message: `Error` once an event failed, else null. */
  message: string | null;
  /** The Temporal run (for show: the one history to read). */
  workflowId: string;
  runId: string;
  workflowType: string;
  status: string;
  host: string | null;
}
