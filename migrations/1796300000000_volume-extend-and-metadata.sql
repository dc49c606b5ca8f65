-- Up Migration

-- Online extend (Cinder 3.42): an in-use volume of the embedded service is `extending` while its
-- ExtendVolume saga runs, as Cinder's volume is.
ALTER TABLE volumes DROP CONSTRAINT volumes_status_check;
ALTER TABLE volumes ADD CONSTRAINT volumes_status_check CHECK (status IN ('creating', 'available', 'reserved', 'attaching',
  'in-use', 'detaching', 'extending', 'deleting', 'error', 'error_deleting'));

-- Cinder's user metadata of a volume (PUT /volumes/{id}, /volumes/{id}/metadata): string keys of 1 to
-- 255 characters, string values of at most 255.
ALTER TABLE volumes ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object');

-- Nova's block_device_mappings.volume_size: the size (GiB) the instance's disk was last extended to.
ALTER TABLE block_device_mappings ADD COLUMN volume_size integer CHECK (volume_size > 0);

-- Down Migration
ALTER TABLE block_device_mappings DROP COLUMN volume_size;
ALTER TABLE volumes DROP COLUMN metadata;
ALTER TABLE volumes DROP CONSTRAINT volumes_status_check;
ALTER TABLE volumes ADD CONSTRAINT volumes_status_check CHECK (status IN ('creating', 'available', 'reserved', 'attaching',
  'in-use', 'detaching', 'deleting', 'error', 'error_deleting'));
