/**
 * Nova's versioned notifications for volume attach and detach (instance.volume_attach.* and
 * instance.volume_detach.*): the event types, and the InstanceActionVolumePayload built from
 * tether's instance row. The payload carries a subset of Nova's instance fields (tether has no
 * flavor, image or ports) and never the BDM's connection_info.
 */
export const VOLUME_EVENT_TYPES = [
  'instance.volume_attach.start',
  'instance.volume_attach.end',
  'instance.volume_attach.error',
  'instance.volume_detach.start',
  'instance.volume_detach.end',
  'instance.volume_detach.error',
  // the reconciler (workflows/repair-reconcile.ts): drift it found, a repair it made
  'instance.volume_drift.found',
  'instance.volume_repair.end',
  'instance.volume_repair.error',
] as const;

export type VolumeEventType = (typeof VOLUME_EVENT_TYPES)[number];

export type NotificationPriority = 'INFO' | 'ERROR';

/** Why an attach or detach failed, as the workflow saw it (its error type, message and failed step). */
export interface NotificationFault {
  type: string;
  message: string;
  step: string | null;
}

/** The instance columns a payload reports. */
export interface InstanceForPayload {
  uuid: string;
  name: string;
  project_id: string;
  host: string | null;
  vm_state: string;
  task_state: string | null;
  availability_zone: string;
  locked: boolean;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
}

export function priorityOf(eventType: VolumeEventType): NotificationPriority {
  return eventType.endsWith('.error') ? 'ERROR' : 'INFO';
}

/** Nova's publisher_id: `nova-compute:<host>` of the compute host the instance is on. */
export function publisherId(host: string | null): string {
  return `nova-compute:${host ?? 'unknown'}`;
}

function novaObject(name: string, version: string, data: Record<string, unknown>) {
  return { 'nova_object.name': name, 'nova_object.namespace': 'nova', 'nova_object.version': version, 'nova_object.data': data };
}

/** Nova's ISO 8601 form without fractions: 2012-10-29T13:42:11Z. */
function novaTime(d: Date | null): string | null {
  return d ? `${d.toISOString().slice(0, 19)}Z` : null;
}

export function instanceActionVolumePayload(instance: InstanceForPayload, volumeId: string, fault: NotificationFault | null) {
  return novaObject('InstanceActionVolumePayload', '1.5', {
    uuid: instance.uuid,
    display_name: instance.name,
    host_name: instance.name,
    host: instance.host,
    node: instance.host,
    tenant_id: instance.project_id,
    state: instance.vm_state,
    task_state: instance.task_state,
    availability_zone: instance.availability_zone,
    locked: instance.locked,
    created_at: novaTime(instance.created_at),
    updated_at: novaTime(instance.updated_at),
    deleted_at: novaTime(instance.deleted_at),
    volume_id: volumeId,
    fault: fault
      ? novaObject('ExceptionPayload', '1.1', {
          exception: fault.type,
          exception_message: fault.message,
          function_name: fault.step ?? 'unknown',
          module_name: 'tether.workflows',
          traceback: '',
        })
      : null,
  });
}

export type VolumePayload = ReturnType<typeof instanceActionVolumePayload>;
