-- Up Migration

-- The compute hosts tether knows: Nova's compute services (os-services) and the fence a force detach
-- puts on a host it could not reach. A compute agent registers its host when it starts and touches
-- last_seen_at at every resync; it clears a fence only after its own cleanup (the disks of volumes no
-- longer attached to its instances detached, their secrets removed), and serves no instance queue
-- while its host is fenced.
CREATE TABLE compute_hosts (
  host            text PRIMARY KEY CHECK (length(host) BETWEEN 1 AND 255),
  -- Nova's service id: a number below compute API 2.53, a UUID from it on
  service_id      integer GENERATED ALWAYS AS IDENTITY UNIQUE,
  service_uuid    uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  disabled        boolean NOT NULL DEFAULT false,
  disabled_reason text CHECK (length(disabled_reason) <= 255),
  -- an operator's word that the host is down (Nova's forced_down): a detach then fences at once
  forced_down     boolean NOT NULL DEFAULT false,
  last_seen_at    timestamptz,
  -- fence_epoch counts fences; the agent clears `fenced` only for the epoch its cleanup started from,
  -- so a fence set during a cleanup is never cleared by it
  fenced          boolean NOT NULL DEFAULT false,
  fence_epoch     bigint NOT NULL DEFAULT 0,
  fenced_at       timestamptz,
  fenced_by       text,
  fence_reason    text,
  cleaned_epoch   bigint NOT NULL DEFAULT 0,
  cleaned_at      timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Wakes the host's agent when its host is fenced (it also looks at every resync).
CREATE FUNCTION notify_host_fenced() RETURNS trigger AS $$
BEGIN
  IF NEW.fenced AND (TG_OP = 'INSERT' OR NEW.fence_epoch IS DISTINCT FROM OLD.fence_epoch) THEN
    PERFORM pg_notify('tether_fences', NEW.host);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER compute_host_fenced AFTER INSERT OR UPDATE ON compute_hosts
  FOR EACH ROW EXECUTE FUNCTION notify_host_fenced();

-- Every volume operation on a (server, volume) pair takes a generation from one sequence when it
-- starts to act on the pair, and the pair remembers the newest one. Each host step carries its
-- operation's generation; the host refuses a step whose generation is older than the pair's, so a
-- late step of an older operation can never undo a newer one (a late detach clearing a newer attach).
CREATE SEQUENCE volume_operation_generation;
CREATE TABLE volume_operation_generations (
  instance_uuid uuid NOT NULL,
  volume_id     uuid NOT NULL,
  generation    bigint NOT NULL,
  operation_id  text NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_uuid, volume_id)
);

-- Down Migration
DROP TABLE volume_operation_generations;
DROP SEQUENCE volume_operation_generation;
DROP TRIGGER compute_host_fenced ON compute_hosts;
DROP FUNCTION notify_host_fenced();
DROP TABLE compute_hosts;
