/** Nova's server representation, by microversion, for the fields clients read. */
import { createHash } from 'node:crypto';
import type { Static } from '@fastify/type-provider-typebox';
import type { BlockDeviceMapping, Instance, VmState } from '../../domain/types.ts';
import type { Server, ServerRef } from '../schemas/compute.ts';
import { cinderTime, novaTime, resourceLinks } from './links.ts';
import { flavorOf } from '../../domain/flavors.ts';
import { embeddedFlavor } from './flavor.ts';

const STATUS: Record<VmState, string> = {
  active: 'ACTIVE',
  building: 'BUILD',
  stopped: 'SHUTOFF',
  paused: 'PAUSED',
  suspended: 'SUSPENDED',
  shelved: 'SHELVED',
  shelved_offloaded: 'SHELVED_OFFLOADED',
  error: 'ERROR',
  deleted: 'DELETED',
  resized: 'VERIFY_RESIZE',
  'soft-delete': 'SOFT_DELETED',
  rescued: 'RESCUE',
};

/** Nova's power_state codes (0 NOSTATE, 1 RUNNING, 3 PAUSED, 4 SHUTDOWN, 7 SUSPENDED) as the vm_state implies them. */
const POWER_STATE: Record<VmState, number> = {
  active: 1,
  building: 0,
  stopped: 4,
  paused: 3,
  suspended: 7,
  shelved: 4,
  shelved_offloaded: 0,
  error: 0,
  deleted: 0,
  resized: 1,
  'soft-delete': 4,
  rescued: 1,
};


/** tether runs without Keystone: every server belongs to this user. */
export const USER_ID = 'tether';

/** Nova's sanitized hostname of a server name (utils.sanitize_hostname): lower case, [a-z0-9.-], at most 63 characters. */
export function hostnameOf(name: string): string {
  const h = name
    .toLowerCase()
    .replace(/[ _]/g, '-')
    .replace(/[^\w.-]+/g, '')
    .replace(/_/g, '')
    .slice(0, 63)
    .replace(/^[.-]+|[.-]+$/g, '');
  return h || 'server';
}

/** The task_states that change a status (Nova's common._STATE_MAP); any other task keeps the vm_state's. */
const TASK_STATUS: Partial<Record<VmState, Record<string, string>>> = {
  active: { rebooting: 'REBOOT', rebooting_hard: 'HARD_REBOOT', migrating: 'MIGRATING', resize_prep: 'RESIZE' },
  stopped: { resize_prep: 'RESIZE' },
  paused: { migrating: 'MIGRATING' },
};

export function serverStatus(vmState: VmState, taskState: string | null = null): string {
  return (taskState !== null ? TASK_STATUS[vmState]?.[taskState] : undefined) ?? STATUS[vmState];
}

export function serverRef(instance: Instance, base: string): Static<typeof ServerRef> {
  return { id: instance.uuid, name: instance.name, links: resourceLinks(base, 'v2.1', `${instance.projectId}/servers/${instance.uuid}`) };
}

export function serverView(instance: Instance, bdms: BlockDeviceMapping[], base: string, microversion: number): Static<typeof Server> {
  const created = novaTime(instance.createdAt);
  const flavor = flavorOf(instance.flavorId);
  const server: Static<typeof Server> = {
    ...serverRef(instance, base),
    status: serverStatus(instance.vmState, instance.taskState),
    tenant_id: instance.projectId,
    user_id: USER_ID,
    metadata: {},
    hostId: instance.host ? createHash('sha224').update(instance.projectId + instance.host).digest('hex') : '',
    image: '',
    flavor: microversion >= 47 ? embeddedFlavor(flavor, microversion) : { id: flavor.id, links: [{ rel: 'bookmark', href: `${base}/${instance.projectId}/flavors/${flavor.id}` }] },
    created,
    updated: created,
    addresses: {},
    accessIPv4: '',
    accessIPv6: '',
    'OS-DCF:diskConfig': 'MANUAL',
    'OS-EXT-AZ:availability_zone': instance.availabilityZone,
    config_drive: '',
    key_name: null,
    // Nova's launched_at has microseconds and no zone (gophercloud parses it with exactly that layout)
    'OS-SRV-USG:launched_at': instance.vmState === 'building' ? null : cinderTime(instance.createdAt),
    'OS-SRV-USG:terminated_at': null,
    'OS-EXT-SRV-ATTR:host': instance.host,
    'OS-EXT-SRV-ATTR:hypervisor_hostname': instance.host,
    'OS-EXT-SRV-ATTR:instance_name': instance.libvirtDomain ?? '',
    'OS-EXT-STS:vm_state': instance.vmState,
    'OS-EXT-STS:task_state': instance.taskState,
    'OS-EXT-STS:power_state': POWER_STATE[instance.vmState],
    'os-extended-volumes:volumes_attached': bdms
      .filter((b) => b.volumeId !== null)
      .map((b) => (microversion >= 3 ? { id: b.volumeId!, delete_on_termination: b.deleteOnTermination } : { id: b.volumeId! })),
  };
  if (microversion >= 9) server.locked = instance.locked;
  if (microversion >= 19) server.description = null;
  if (microversion >= 26) server.tags = [];
  if (microversion >= 73) server.locked_reason = null;
  if (microversion >= 90) server['OS-EXT-SRV-ATTR:hostname'] = hostnameOf(instance.name);
  if (microversion >= 96) server.pinned_availability_zone = instance.pinnedAvailabilityZone ?? null;
  if (microversion >= 100) server.scheduler_hints = instance.schedulerHints ?? {};
  return server;
}
