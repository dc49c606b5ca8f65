/** Request and response schemas of the compute API (Nova v2.1). Fields that depend on the microversion are optional. */
import { Type } from '@fastify/type-provider-typebox';
import { Links, Nullable } from './common.ts';

export const ServerRef = Type.Object({ id: Type.String(), name: Type.String(), links: Links });

export const Flavor = Type.Object(
  {
    id: Type.Optional(Type.String()),
    links: Type.Optional(Links),
    vcpus: Type.Optional(Type.Integer()),
    ram: Type.Optional(Type.Integer()),
    disk: Type.Optional(Type.Integer()),
    ephemeral: Type.Optional(Type.Integer()),
    swap: Type.Optional(Type.Integer()),
    original_name: Type.Optional(Type.String()),
    extra_specs: Type.Optional(Type.Record(Type.String(), Type.String())),
  },
  { description: '{id, links} before 2.47, the embedded flavor from 2.47' },
);

export const Server = Type.Object({
  id: Type.String(),
  name: Type.String(),
  status: Type.String(),
  tenant_id: Type.String(),
  user_id: Type.String(),
  metadata: Type.Record(Type.String(), Type.String()),
  hostId: Type.String(),
  image: Type.String({ description: 'always "" (no image service)' }),
  flavor: Flavor,
  created: Type.String(),
  updated: Type.String(),
  addresses: Type.Record(Type.String(), Type.Array(Type.Object({ addr: Type.String(), version: Type.Integer() }))),
  accessIPv4: Type.String(),
  accessIPv6: Type.String(),
  links: Links,
  'OS-DCF:diskConfig': Type.String(),
  'OS-EXT-AZ:availability_zone': Type.String(),
  config_drive: Type.String(),
  key_name: Nullable(Type.String()),
  'OS-SRV-USG:launched_at': Nullable(Type.String()),
  'OS-SRV-USG:terminated_at': Nullable(Type.String()),
  'OS-EXT-SRV-ATTR:host': Nullable(Type.String()),
  'OS-EXT-SRV-ATTR:hypervisor_hostname': Nullable(Type.String()),
  'OS-EXT-SRV-ATTR:instance_name': Type.String(),
  'OS-EXT-STS:vm_state': Type.String(),
  'OS-EXT-STS:task_state': Nullable(Type.String()),
  'OS-EXT-STS:power_state': Type.Integer(),
  'os-extended-volumes:volumes_attached': Type.Array(
    Type.Object({ id: Type.String(), delete_on_termination: Type.Optional(Type.Boolean({ description: 'from 2.3' })) }),
  ),
  locked: Type.Optional(Type.Boolean({ description: 'from 2.9' })),
  description: Type.Optional(Nullable(Type.String({ description: 'from 2.19' }))),
  tags: Type.Optional(Type.Array(Type.String(), { description: 'from 2.26' })),
  locked_reason: Type.Optional(Nullable(Type.String({ description: 'from 2.73' }))),
  'OS-EXT-SRV-ATTR:hostname': Type.Optional(Type.String({ description: 'from 2.90' })),
  pinned_availability_zone: Type.Optional(Nullable(Type.String({ description: 'from 2.96' }))),
  scheduler_hints: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'from 2.100' })),
});

export const ServerListQuery = Type.Object(
  { name: Type.Optional(Type.String()), all_tenants: Type.Optional(Type.String({ description: 'admins: every project' })) },
  { additionalProperties: true },
);

export const VolumeAttachment = Type.Object({
  id: Type.Optional(Type.String({ description: 'the volume id; not in GET/list from 2.89' })),
  serverId: Type.String(),
  volumeId: Type.String(),
  device: Nullable(Type.String()),
  tag: Type.Optional(Nullable(Type.String({ description: 'from 2.70' }))),
  delete_on_termination: Type.Optional(Type.Boolean({ description: 'from 2.79' })),
  attachment_id: Type.Optional(Nullable(Type.String({ description: 'GET/list from 2.89' }))),
  bdm_uuid: Type.Optional(Type.String({ description: 'GET/list from 2.89' })),
});

export const CreateVolumeAttachment = Type.Object(
  {
    volumeAttachment: Type.Object(
      {
        volumeId: Type.String({ format: 'uuid' }),
        device: Type.Optional(Nullable(Type.String({ maxLength: 255, description: 'null or absent: the host picks the next free name' }))),
        tag: Type.Optional(Type.String({ maxLength: 60, pattern: '^[^,/]*$', description: 'from 2.49' })),
        delete_on_termination: Type.Optional(Type.Boolean({ description: 'from 2.79' })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** Nova's parameter_types.boolean: a JSON boolean or one of these strings. */
const NOVA_BOOLEAN_STRINGS = ['True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no'];
export const NovaBoolean = Type.Unsafe<boolean | string>({ anyOf: [{ type: 'boolean' }, { type: 'string', enum: NOVA_BOOLEAN_STRINGS }] });

export function novaBoolean(value: boolean | string): boolean {
  return typeof value === 'boolean' ? value : ['true', '1', 'on', 'yes'].includes(value.toLowerCase());
}

/**
 * PUT os-volume_attachments/{volume_id}: from 2.85 the GET's fields may be sent back and only
 * delete_on_termination may change (or volumeId: a swap); below 2.85 only volumeId (a swap).
 */
export const UpdateVolumeAttachment = Type.Object(
  {
    volumeAttachment: Type.Object(
      {
        volumeId: Type.String({ format: 'uuid' }),
        device: Type.Optional(Nullable(Type.String({ pattern: '(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$', description: 'from 2.85, not mutable' }))),
        tag: Type.Optional(Type.String({ maxLength: 60, pattern: '^[^,/]*$', description: 'from 2.85, not mutable' })),
        delete_on_termination: Type.Optional(NovaBoolean),
        serverId: Type.Optional(Type.String({ format: 'uuid', description: 'from 2.85, not mutable' })),
        id: Type.Optional(Type.String({ format: 'uuid', description: 'from 2.85, not mutable' })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export const AttachmentListQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 0 })), offset: Type.Optional(Type.Integer({ minimum: 0 })) },
  { additionalProperties: true },
);

/** One event of POST /os-server-external-events (the names a microversion takes are checked by the route). */
export const ExternalEvent = Type.Object(
  {
    name: Type.String({ description: 'network-changed, network-vif-plugged, network-vif-unplugged, network-vif-deleted; volume-extended (2.51), power-update (2.76), accelerator-request-bound (2.82)' }),
    server_uuid: Type.String({ format: 'uuid' }),
    status: Type.Optional(Type.Union([Type.Literal('failed'), Type.Literal('completed'), Type.Literal('in-progress')])),
    tag: Type.Optional(Type.String({ maxLength: 255, description: 'volume-extended: the volume id' })),
  },
  { additionalProperties: false },
);

export const ExternalEvents = Type.Object({ events: Type.Array(ExternalEvent, { minItems: 1 }) }, { additionalProperties: false });

export const ExternalEventResult = Type.Object({
  name: Type.String(),
  server_uuid: Type.String(),
  status: Type.String(),
  tag: Type.Optional(Type.String()),
  code: Type.Integer({ description: '200 accepted, 400 tag missing, 404 unknown server, 422 server without a host' }),
});
