/** Request and response schemas of the block-storage API (Cinder v3) for tether's embedded volume service. */
import { Type } from '@fastify/type-provider-typebox';
import { Links, Nullable } from './common.ts';

export const VolumeRef = Type.Object({ id: Type.String(), name: Nullable(Type.String()), links: Links });

export const VolumeAttachmentSummary = Type.Object({
  id: Type.String({ description: 'the volume id' }),
  attachment_id: Type.String(),
  volume_id: Type.String(),
  server_id: Type.String(),
  host_name: Nullable(Type.String()),
  device: Nullable(Type.String()),
  attached_at: Nullable(Type.String()),
});

export const Volume = Type.Object({
  id: Type.String(),
  name: Nullable(Type.String()),
  description: Nullable(Type.String()),
  status: Type.String(),
  size: Type.Integer(),
  availability_zone: Type.String(),
  created_at: Type.String(),
  updated_at: Nullable(Type.String()),
  attachments: Type.Array(VolumeAttachmentSummary),
  volume_type: Type.String(),
  snapshot_id: Type.Null(),
  source_volid: Type.Null(),
  metadata: Type.Record(Type.String(), Type.String()),
  links: Links,
  user_id: Type.String(),
  bootable: Type.String({ description: '"true" or "false", as Cinder sends it' }),
  encrypted: Type.Boolean(),
  replication_status: Type.Null(),
  consistencygroup_id: Type.Null(),
  multiattach: Type.Boolean(),
  'os-vol-tenant-attr:tenant_id': Type.String(),
  'os-vol-host-attr:host': Type.String(),
  'os-vol-mig-status-attr:migstat': Type.Null(),
  'os-vol-mig-status-attr:name_id': Type.Null(),
  group_id: Type.Optional(Type.Null({ description: 'from 3.13' })),
  shared_targets: Type.Optional(Type.Boolean({ description: 'from 3.48' })),
  service_uuid: Type.Optional(Type.Null({ description: 'from 3.48' })),
  volume_type_id: Type.Optional(Type.Null({ description: 'from 3.63' })),
  consumes_quota: Type.Optional(Type.Boolean({ description: 'from 3.65' })),
});

export const VolumeListQuery = Type.Object(
  { name: Type.Optional(Type.String()), all_tenants: Type.Optional(Type.String()) },
  { additionalProperties: true },
);

/** What cinderclient and the SDK send; tether makes blank volumes only, so the source fields must be null. */
const Source = Type.Optional(Nullable(Type.String()));

/** Cinder's metadata or null (volume create: metadata_allows_null), keys and values as `Metadata` below. */
const MetadataOrNull = Type.Unsafe<Record<string, string> | null>({
  type: ['object', 'null'],
  patternProperties: { '^[a-zA-Z0-9-_:. /]{1,255}$': { type: 'string', maxLength: 255 } },
  additionalProperties: false,
});
export const CreateVolume = Type.Object(
  {
    volume: Type.Object(
      {
        size: Type.Integer({ minimum: 1, maximum: 1024 }),
        name: Type.Optional(Nullable(Type.String({ maxLength: 255 }))),
        description: Type.Optional(Nullable(Type.String({ maxLength: 255 }))),
        availability_zone: Type.Optional(Nullable(Type.String())),
        multiattach: Type.Optional(Nullable(Type.Boolean())),
        volume_type: Type.Optional(Nullable(Type.String())),
        // Cinder's create schema: the same keys and values as the metadata APIs (metadata_allows_null)
        metadata: Type.Optional(MetadataOrNull),
        snapshot_id: Source,
        source_volid: Source,
        imageRef: Source,
        backup_id: Source,
        consistencygroup_id: Source,
        group_id: Source,
      },
      { additionalProperties: true },
    ),
    'OS-SCH-HNT:scheduler_hints': Type.Optional(Nullable(Type.Object({}, { additionalProperties: true }))),
  },
  { additionalProperties: false },
);

/** Cinder's metadata: keys of 1 to 255 characters from `[a-zA-Z0-9-_:. /]`, string values of at most 255. */
export const Metadata = Type.Unsafe<Record<string, string>>({
  type: 'object',
  patternProperties: { '^[a-zA-Z0-9-_:. /]{1,255}$': { type: 'string', maxLength: 255 } },
  additionalProperties: false,
});

/** PUT /volumes/{id}: what Cinder lets a user change (v2's display_* names too). */
export const UpdateVolume = Type.Object(
  {
    volume: Type.Object(
      {
        name: Type.Optional(Nullable(Type.String({ maxLength: 255 }))),
        description: Type.Optional(Nullable(Type.String({ maxLength: 255 }))),
        display_name: Type.Optional(Nullable(Type.String({ maxLength: 255 }))),
        display_description: Type.Optional(Nullable(Type.String({ maxLength: 255 }))),
        metadata: Type.Optional(Metadata),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** POST /volumes/{id}/metadata and PUT /volumes/{id}/metadata. */
export const MetadataBody = Type.Object({ metadata: Metadata }, { additionalProperties: false });

/** PUT /volumes/{id}/metadata/{key}: exactly one key. */
export const MetaBody = Type.Object(
  {
    meta: Type.Unsafe<Record<string, string>>({
      type: 'object',
      patternProperties: { '^[a-zA-Z0-9-_:. /]{1,255}$': { type: 'string', maxLength: 255 } },
      additionalProperties: false,
      minProperties: 1,
      maxProperties: 1,
    }),
  },
  { additionalProperties: false },
);

/** POST /volumes/{id}/action: the one action tether's volume service takes, `os-extend` (Cinder's schema: a whole number, or its digits). */
export const VolumeAction = Type.Object(
  {
    'os-extend': Type.Optional(
      Type.Object(
        { new_size: Type.Unsafe<number | string>({ anyOf: [{ type: 'integer', minimum: 1, maximum: 2147483647 }, { type: 'string', pattern: '^[0-9]+$' }] }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: true, minProperties: 1, maxProperties: 1 },
);

/** An attachment in Cinder's summary view (GET /attachments). */
export const AttachmentSummary = Type.Object({ id: Type.String(), status: Type.String(), instance: Nullable(Type.String()), volume_id: Type.String() });

/** …and in its detailed view (GET /attachments/detail, /attachments/{id}). */
export const AttachmentDetail = Type.Object({
  id: Type.String(),
  status: Type.String(),
  instance: Nullable(Type.String()),
  volume_id: Type.String(),
  attached_at: Type.String({ description: '"" until attached' }),
  detached_at: Type.String({ description: 'always "" (a detached attachment is gone)' }),
  attach_mode: Type.String(),
  connection_info: Type.Record(Type.String(), Type.Unknown()),
});

export const AttachmentListQuery = Type.Object(
  {
    all_tenants: Type.Optional(Type.String()),
    volume_id: Type.Optional(Type.String()),
    instance_id: Type.Optional(Type.String()),
    status: Type.Optional(Type.String()),
    attach_status: Type.Optional(Type.String()),
    limit: Type.Optional(Type.Integer({ minimum: 0 })),
    offset: Type.Optional(Type.Integer({ minimum: 0 })),
    marker: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);
