-- Up Migration

-- The reconciler (workflows/repair-reconcile.ts) repairs only what two runs in a row found: each run
-- records its findings here (one row per finding, by scope — a host — and a fingerprint of kind,
-- instance and volume), counts the runs that saw it, and forgets what it no longer sees.
CREATE TABLE reconcile_findings (
  scope         text NOT NULL,
  fingerprint   text NOT NULL,
  kind          text NOT NULL,
  instance_uuid uuid,
  volume_id     uuid,
  detail        text NOT NULL,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  -- the last run (`<workflow id>/<run id>`) that saw it, and how many runs in a row did
  last_run      text NOT NULL,
  runs          integer NOT NULL DEFAULT 1,
  PRIMARY KEY (scope, fingerprint)
);

-- Repairs are notified as Nova-style instance events: instance.volume_repair.end / .error, and the
-- drift a reconcile run found, instance.volume_drift.found.
ALTER TABLE notifications_outbox DROP CONSTRAINT notifications_outbox_event_type_check;
ALTER TABLE notifications_outbox ADD CONSTRAINT notifications_outbox_event_type_check CHECK (event_type IN (
  'instance.volume_attach.start', 'instance.volume_attach.end', 'instance.volume_attach.error',
  'instance.volume_detach.start', 'instance.volume_detach.end', 'instance.volume_detach.error',
  'instance.volume_drift.found', 'instance.volume_repair.end', 'instance.volume_repair.error'));

-- Down Migration
DELETE FROM notifications_outbox WHERE event_type IN ('instance.volume_drift.found', 'instance.volume_repair.end', 'instance.volume_repair.error');
ALTER TABLE notifications_outbox DROP CONSTRAINT notifications_outbox_event_type_check;
ALTER TABLE notifications_outbox ADD CONSTRAINT notifications_outbox_event_type_check CHECK (event_type IN (
  'instance.volume_attach.start', 'instance.volume_attach.end', 'instance.volume_attach.error',
  'instance.volume_detach.start', 'instance.volume_detach.end', 'instance.volume_detach.error'));
DROP TABLE reconcile_findings;
