-- Up Migration

-- The flavor a server was created with (src/domain/flavors.ts: a fixed table of sizes); servers
-- created before flavors existed are all the OS-less tether.tiny.
ALTER TABLE instances ADD COLUMN flavor_id text NOT NULL DEFAULT 'tether.tiny' CHECK (length(flavor_id) BETWEEN 1 AND 255);
-- Nova's pinned_availability_zone (compute API 2.96): the zone the create request asked for, else null.
ALTER TABLE instances ADD COLUMN pinned_availability_zone text CHECK (length(pinned_availability_zone) <= 255);
-- Nova's scheduler_hints of the create request (shown from compute API 2.100; tether has no scheduler).
ALTER TABLE instances ADD COLUMN scheduler_hints jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(scheduler_hints) = 'object');

-- Down Migration
ALTER TABLE instances DROP COLUMN scheduler_hints;
ALTER TABLE instances DROP COLUMN pinned_availability_zone;
ALTER TABLE instances DROP COLUMN flavor_id;
