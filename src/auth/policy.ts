/**
 * tether's policy, in one place for the HTTP API and the CLI (Nova's and Cinder's default rules,
 * reduced to three roles):
 *
 * - a project's servers and volumes are visible only to callers scoped to that project, and to
 *   admins; anything else is "not found" (404), as Nova answers, never "forbidden";
 * - on a visible resource, the role decides: reader lists and shows, member also changes
 *   (attach, detach, create, delete, shelve…), admin does everything anywhere (all_tenants,
 *   migrate, choosing a host, the invariant checker). A role that is too weak is a 403.
 *
 * Roles imply the weaker ones: admin ⊇ member ⊇ reader. `service` (a service user: a Cinder telling
 * tether about a volume it extended, or validating tokens) grants only the service-to-service APIs,
 * which admins may call too (Nova's `service_or_admin`).
 */
import { TetherError } from '../errors.ts';
import type { Caller, Role } from './caller.ts';

export type RequiredRole = 'reader' | 'member' | 'admin' | 'service';

/** Every action a caller can take, with its Nova/Cinder policy name and the weakest role allowed. */
export const POLICY = {
  'servers:list': { name: 'os_compute_api:servers:index', role: 'reader' },
  'servers:list:all_tenants': { name: 'os_compute_api:servers:index:get_all_tenants', role: 'admin' },
  'servers:show': { name: 'os_compute_api:servers:show', role: 'reader' },
  'servers:create': { name: 'os_compute_api:servers:create', role: 'member' },
  'servers:create:forced_host': { name: 'os_compute_api:servers:create:forced_host', role: 'admin' },
  'servers:delete': { name: 'os_compute_api:servers:delete', role: 'member' },
  'servers:shelve': { name: 'os_compute_api:os-shelve:shelve', role: 'member' },
  'servers:shelve_offload': { name: 'os_compute_api:os-shelve:shelve_offload', role: 'member' },
  'servers:unshelve': { name: 'os_compute_api:os-shelve:unshelve', role: 'member' },
  'servers:unshelve:host': { name: 'os_compute_api:os-shelve:unshelve_to_host', role: 'admin' },
  'servers:migrate': { name: 'os_compute_api:os-migrate-server:migrate', role: 'admin' },
  'servers:migrate:host': { name: 'os_compute_api:os-migrate-server:migrate:host', role: 'admin' },
  'servers:start': { name: 'os_compute_api:servers:start', role: 'member' },
  'servers:stop': { name: 'os_compute_api:servers:stop', role: 'member' },
  'servers:reboot': { name: 'os_compute_api:servers:reboot', role: 'member' },
  'servers:import': { name: 'tether:servers:import', role: 'admin' },
  'attachments:list': { name: 'os_compute_api:os-volumes-attachments:index', role: 'reader' },
  'attachments:show': { name: 'os_compute_api:os-volumes-attachments:show', role: 'reader' },
  'attachments:create': { name: 'os_compute_api:os-volumes-attachments:create', role: 'member' },
  'attachments:delete': { name: 'os_compute_api:os-volumes-attachments:delete', role: 'member' },
  'attachments:force_delete': { name: 'tether:os-volumes-attachments:force_delete', role: 'admin' },
  'services:list': { name: 'os_compute_api:os-services:list', role: 'admin' },
  'services:update': { name: 'os_compute_api:os-services:update', role: 'admin' },
  'attachments:update': { name: 'os_compute_api:os-volumes-attachments:update', role: 'member' },
  'attachments:swap': { name: 'os_compute_api:os-volumes-attachments:swap', role: 'service' },
  'server_external_events:create': { name: 'os_compute_api:os-server-external-events:create', role: 'service' },
  'attachments:retry': { name: 'tether:attachments:retry', role: 'member' },
  'operations:list': { name: 'tether:operations:index', role: 'reader' },
  'operations:history': { name: 'tether:operations:show', role: 'reader' },
  'volumes:list': { name: 'volume:get_all', role: 'reader' },
  'volumes:show': { name: 'volume:get', role: 'reader' },
  'volumes:create': { name: 'volume:create', role: 'member' },
  'volumes:delete': { name: 'volume:delete', role: 'member' },
  'volumes:update': { name: 'volume:update', role: 'member' },
  'volumes:extend': { name: 'volume_extension:volume_actions:extend', role: 'member' },
  'volumes:extend_attached': { name: 'volume:extend_attached_volume', role: 'member' },
  'volumes:migrate': { name: 'volume_extension:volume_admin_actions:migrate_volume', role: 'admin' },
  'volumes:metadata:show': { name: 'volume:get_volume_metadata', role: 'reader' },
  'volumes:metadata:update': { name: 'volume:update_volume_metadata', role: 'member' },
  'volumes:metadata:delete': { name: 'volume:delete_volume_metadata', role: 'member' },
  'volume_attachments:list': { name: 'volume:attachment_get_all', role: 'reader' },
  'volume_attachments:show': { name: 'volume:attachment_get', role: 'reader' },
  'invariants:check': { name: 'tether:check', role: 'admin' },
  'instance_actions:list': { name: 'os_compute_api:os-instance-actions:list', role: 'reader' },
  'instance_actions:show': { name: 'os_compute_api:os-instance-actions:show', role: 'reader' },
  /** Every event field (traceback; from 2.62 the host): admins, as in Nova. */
  'instance_actions:events': { name: 'os_compute_api:os-instance-actions:events', role: 'admin' },
  /** The events' details (2.84): the project's readers, as in Nova. */
  'instance_actions:events:details': { name: 'os_compute_api:os-instance-actions:events:details', role: 'reader' },
} as const satisfies Record<string, { name: string; role: RequiredRole }>;

export type Action = keyof typeof POLICY;

const IMPLIED: Record<Role, RequiredRole[]> = {
  admin: ['admin', 'member', 'reader', 'service'],
  member: ['member', 'reader'],
  reader: ['reader'],
  service: ['service'],
};

export function hasRole(caller: Caller, role: RequiredRole): boolean {
  return caller.roles.some((r) => IMPLIED[r].includes(role));
}

export function isAdmin(caller: Caller): boolean {
  return hasRole(caller, 'admin');
}

/** Whether resources of `projectId` exist for this caller (its own project; every project for an admin). */
export function canSee(caller: Caller, projectId: string): boolean {
  return isAdmin(caller) || caller.projectId === projectId;
}

export function allowed(caller: Caller, action: Action): boolean {
  return hasRole(caller, POLICY[action].role);
}

/** Throws PolicyNotAuthorized (403) unless the caller's roles allow the action. */
export function authorize(caller: Caller, action: Action): void {
  if (!allowed(caller, action)) throw new TetherError('PolicyNotAuthorized', `Policy doesn't allow ${POLICY[action].name} to be performed.`);
}
