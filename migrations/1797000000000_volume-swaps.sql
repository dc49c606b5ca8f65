-- Up Migration

-- Cinder's migration_status of a volume of the embedded service: 'migrating' while its data moves to
-- another volume (the destination says 'target:<source id>'), 'success' or 'error' once it ended.
-- Nova's swap (PUT os-volume_attachments with another volumeId) is allowed only while it migrates.
ALTER TABLE volumes ADD COLUMN migration_status text CHECK (length(migration_status) <= 255);

-- One row per swap saga (workflows/swap-volume.ts): the new volume's attachment and the
-- connection_info the block storage gave for it, which the host's block copy reads (never in a
-- workflow's history) and which moves to the BDM once the disk has pivoted to the new volume.
CREATE TABLE volume_swaps (
  operation_id      text PRIMARY KEY,
  instance_uuid     uuid NOT NULL,
  bdm_uuid          uuid NOT NULL,
  old_volume_id     uuid NOT NULL,
  new_volume_id     uuid NOT NULL,
  new_attachment_id uuid,
  connection_info   jsonb,
  -- running → pivoted → completed, or rolled-back
  state             text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'pivoted', 'completed', 'rolled-back')),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX volume_swaps_instance ON volume_swaps (instance_uuid);

-- Down Migration
DROP TABLE volume_swaps;
ALTER TABLE volumes DROP COLUMN migration_status;
