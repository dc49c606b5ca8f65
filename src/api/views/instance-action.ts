/**
 * Nova's instance action and its events as the compute API shows them, per microversion
 * (nova/api/openstack/compute/instance_actions.py): 2.58 adds `updated_at`; events are shown to
 * admins at every version and to the server's project from 2.51 (the `traceback` to admins only);
 * 2.62 adds each event's `hostId` (and `host` for admins); 2.84 each event's `details`.
 */
import { createHash } from 'node:crypto';
import type { ActionEvent, InstanceAction } from '../../domain/instance-actions.ts';
import { cinderTime } from './links.ts';

/** Nova's instance-action timestamps: microseconds, no zone (the same shape as Cinder's). */
const actionTime = cinderTime;

/** Nova's utils.generate_hostid: sha224 of the project id and the host, empty without a host. */
export function hostIdOf(host: string | null, projectId: string): string {
  return host ? createHash('sha224').update(projectId + host).digest('hex') : '';
}

export function instanceActionView(a: InstanceAction, microversion: number) {
  return {
    action: a.action,
    instance_uuid: a.instanceUuid,
    request_id: a.requestId,
    user_id: a.userId,
    project_id: a.projectId,
    start_time: actionTime(a.startTime),
    message: a.message,
    ...(microversion >= 58 ? { updated_at: actionTime(a.updatedAt) } : {}),
  };
}

export interface EventVisibility {
  traceback: boolean;
  host: boolean;
  hostId: boolean;
  details: boolean;
}

/** Which event fields a caller sees at a microversion (Nova's show()). */
export function eventVisibility(microversion: number, can: { events: boolean; details: boolean }): EventVisibility | null {
  if (!can.events && microversion < 51) return null;
  return {
    traceback: can.events,
    host: can.events && microversion >= 62,
    hostId: microversion >= 62,
    details: microversion >= 84 && can.details,
  };
}

export function actionEventView(e: ActionEvent, projectId: string, show: EventVisibility) {
  return {
    event: e.event,
    start_time: actionTime(e.startTime),
    finish_time: e.finishTime === null ? null : actionTime(e.finishTime),
    result: e.result,
    ...(show.traceback ? { traceback: e.result === 'Error' ? e.details : null } : {}),
    ...(show.host ? { host: e.host ?? '' } : {}),
    ...(show.hostId ? { hostId: hostIdOf(e.host, projectId) } : {}),
    ...(show.details ? { details: e.details } : {}),
  };
}
