/** Task queue names. Safe to import from workflows. */

/** Served by the compute agent hosting the instance, one activity at a time: serializes host steps per instance. */
export function instanceTaskQueue(instanceUuid: string): string {
  return `instance-${instanceUuid}`;
}

/** Host-level work (define/start/destroy domains), served by one compute agent. */
export function hostTaskQueue(host: string): string {
  return `host-${host}`;
}
