-- Up Migration

-- Instances (Nova's instances table, reduced to what attach/detach needs).
CREATE TABLE instances (
  uuid              uuid PRIMARY KEY,
  name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  project_id        text NOT NULL,
  host              text,
  vm_state          text NOT NULL CHECK (vm_state IN ('building', 'active', 'paused', 'stopped', 'suspended',
                      'resized', 'soft-delete', 'shelved', 'shelved_offloaded', 'rescued', 'error', 'deleted')),
  task_state        text,
  availability_zone text NOT NULL,
  libvirt_domain    text,
  root_device_name  text,
  default_disk_bus  text NOT NULL DEFAULT 'scsi' CHECK (default_disk_bus IN ('virtio', 'scsi', 'ide', 'sata', 'usb')),
  locked            boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  deleted_at        timestamptz,
  -- an offloaded instance has no host; every other live instance has one
  CHECK (deleted_at IS NOT NULL OR vm_state IN ('shelved_offloaded', 'deleted', 'error', 'building') OR host IS NOT NULL)
);
CREATE INDEX instances_live_by_host ON instances (host) WHERE deleted_at IS NULL;
CREATE INDEX instances_live_by_name ON instances (name) WHERE deleted_at IS NULL;

-- Block device mappings: instance <-> volume, soft-deleted like Nova's.
CREATE TABLE block_device_mappings (
  uuid                  uuid PRIMARY KEY,
  instance_uuid         uuid NOT NULL REFERENCES instances (uuid),
  volume_id             uuid,
  source_type           text NOT NULL CHECK (source_type IN ('volume', 'image', 'snapshot', 'blank')),
  destination_type      text NOT NULL CHECK (destination_type IN ('volume', 'local')),
  device_name           text CHECK (device_name ~ '^/dev/x?[a-z]?d?[a-z]+[0-9]*$'),
  disk_bus              text CHECK (disk_bus IN ('virtio', 'scsi', 'ide', 'sata', 'usb')),
  device_type           text CHECK (device_type IN ('disk', 'cdrom', 'lun')),
  boot_index            integer,
  tag                   text CHECK (length(tag) <= 60),
  delete_on_termination boolean NOT NULL DEFAULT false,
  attachment_id         uuid,
  connection_info       jsonb,
  attach_status         text NOT NULL DEFAULT 'attaching' CHECK (attach_status IN ('attaching', 'attached', 'detaching')),
  -- the workflow id that created this mapping: makes every step idempotent across retries
  operation_id          text,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  deleted_at            timestamptz,
  CHECK (source_type <> 'volume' OR volume_id IS NOT NULL)
);
-- The invariants, held by the database even if code is wrong:
-- at most one live mapping per (instance, device name) and per (instance, volume).
CREATE UNIQUE INDEX bdm_one_live_per_device ON block_device_mappings (instance_uuid, device_name)
  WHERE deleted_at IS NULL AND device_name IS NOT NULL;
CREATE UNIQUE INDEX bdm_one_live_per_volume ON block_device_mappings (instance_uuid, volume_id)
  WHERE deleted_at IS NULL AND volume_id IS NOT NULL;
CREATE INDEX bdm_live_by_volume ON block_device_mappings (volume_id) WHERE deleted_at IS NULL;

-- The embedded block storage (tether's local volume service), shaped after Cinder.
CREATE TABLE volumes (
  id                uuid PRIMARY KEY,
  name              text CHECK (length(name) <= 255),
  description       text,
  project_id        text NOT NULL,
  size_gb           integer NOT NULL CHECK (size_gb BETWEEN 1 AND 1024),
  status            text NOT NULL CHECK (status IN ('creating', 'available', 'reserved', 'attaching', 'in-use',
                      'detaching', 'deleting', 'error', 'error_deleting')),
  availability_zone text NOT NULL,
  multiattach       boolean NOT NULL DEFAULT false,
  bootable          boolean NOT NULL DEFAULT false,
  encrypted         boolean NOT NULL DEFAULT false,
  file_path         text,
  file_format       text NOT NULL DEFAULT 'qcow2' CHECK (file_format IN ('qcow2', 'raw')),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  deleted_at        timestamptz
);
CREATE INDEX volumes_live_by_name ON volumes (name) WHERE deleted_at IS NULL;

CREATE TABLE volume_attachments (
  id            uuid PRIMARY KEY,
  volume_id     uuid NOT NULL REFERENCES volumes (id),
  instance_uuid uuid NOT NULL,
  -- copied from the volume so that a unique index can forbid a second attachment of a non-multiattach volume
  multiattach   boolean NOT NULL,
  status        text NOT NULL CHECK (status IN ('reserved', 'attaching', 'attached', 'detaching')),
  connector     jsonb,
  mountpoint    text,
  attach_mode   text NOT NULL DEFAULT 'rw' CHECK (attach_mode IN ('rw', 'ro')),
  attached_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  deleted_at    timestamptz
);
CREATE UNIQUE INDEX volume_attachment_one_live_per_instance ON volume_attachments (volume_id, instance_uuid)
  WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX volume_attachment_exclusive ON volume_attachments (volume_id)
  WHERE deleted_at IS NULL AND NOT multiattach;

-- Compute agents notice instances that arrive on or leave their host without polling hard.
CREATE FUNCTION notify_instances_changed() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('tether_instances', COALESCE(NEW.host, OLD.host, ''));
  IF TG_OP = 'UPDATE' AND OLD.host IS DISTINCT FROM NEW.host AND OLD.host IS NOT NULL THEN
    PERFORM pg_notify('tether_instances', OLD.host);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER instances_changed AFTER INSERT OR UPDATE OR DELETE ON instances
  FOR EACH ROW EXECUTE FUNCTION notify_instances_changed();

-- Down Migration
DROP TRIGGER instances_changed ON instances;
DROP FUNCTION notify_instances_changed();
DROP TABLE volume_attachments;
DROP TABLE volumes;
DROP TABLE block_device_mappings;
DROP TABLE instances;
