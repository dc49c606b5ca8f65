-- Up Migration

-- Nova-style versioned notifications (instance.volume_attach.*, instance.volume_detach.*), written in
-- the same transaction as the state change they report and published from here (the outbox pattern).
CREATE TABLE notifications_outbox (
  -- publishing order; message_id is what consumers see and deduplicate on
  seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id   uuid NOT NULL UNIQUE,
  event_type   text NOT NULL CHECK (event_type IN (
                 'instance.volume_attach.start', 'instance.volume_attach.end', 'instance.volume_attach.error',
                 'instance.volume_detach.start', 'instance.volume_detach.end', 'instance.volume_detach.error')),
  priority     text NOT NULL CHECK (priority IN ('INFO', 'ERROR')),
  publisher_id text NOT NULL,
  payload      jsonb NOT NULL,
  -- the workflow run that reported it (`<workflow id>/<run id>`): one row per event of a run,
  -- however often a retried activity writes it
  operation    text NOT NULL,
  instance_uuid uuid NOT NULL,
  volume_id    uuid NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  UNIQUE (operation, event_type)
);
CREATE INDEX notifications_outbox_unpublished ON notifications_outbox (seq) WHERE published_at IS NULL;
CREATE INDEX notifications_outbox_published_at ON notifications_outbox (published_at) WHERE published_at IS NOT NULL;

-- Wakes the publishers (they also poll, so a lost notification only delays).
CREATE FUNCTION notify_notifications_outbox() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('tether_notifications', '');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER notifications_outbox_inserted AFTER INSERT ON notifications_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION notify_notifications_outbox();

-- Down Migration
DROP TRIGGER notifications_outbox_inserted ON notifications_outbox;
DROP FUNCTION notify_notifications_outbox();
DROP TABLE notifications_outbox;
