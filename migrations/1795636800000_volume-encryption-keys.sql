-- Up Migration

-- Encrypted volumes of the embedded volume service, modelled on Cinder's encryption metadata
-- (volume type `luks`, front-end LUKS) and on Barbican for the key: each encrypted volume has one
-- key, kept here encrypted at rest (AES-256-GCM) under the master key of the configuration
-- (TETHER_VOLUME_KEY). The plain key never reaches the database.
CREATE TABLE volume_encryption_keys (
  id                     uuid PRIMARY KEY,
  -- a key belongs to one volume; it is deleted (crypto-shredded) with the volume
  volume_id              uuid NOT NULL UNIQUE REFERENCES volumes (id),
  provider               text NOT NULL CHECK (provider = 'luks'),
  cipher                 text NOT NULL,
  key_size               integer NOT NULL CHECK (key_size IN (256, 512)),
  control_location       text NOT NULL CHECK (control_location = 'front-end'),
  -- AES-256-GCM of the key under the master key; the key id is the additional authenticated data
  ciphertext             bytea NOT NULL,
  nonce                  bytea NOT NULL CHECK (length(nonce) = 12),
  auth_tag               bytea NOT NULL CHECK (length(auth_tag) = 16),
  -- first 8 bytes of SHA-256 of the master key, hex: says which master key a row needs
  master_key_fingerprint text NOT NULL,
  created_at             timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE volumes ADD COLUMN encryption_key_id uuid;
-- an encrypted volume names its key, a plain one has none (the key row may be gone once deleted)
ALTER TABLE volumes ADD CONSTRAINT volumes_encryption_key_when_encrypted
  CHECK (encrypted = (encryption_key_id IS NOT NULL));

-- Down Migration
ALTER TABLE volumes DROP CONSTRAINT volumes_encryption_key_when_encrypted;
ALTER TABLE volumes DROP COLUMN encryption_key_id;
DROP TABLE volume_encryption_keys;
