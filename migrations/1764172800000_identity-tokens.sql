-- Up Migration
-- Tokens of tether's Keystone-compatible identity (TETHER_AUTH=keystone). Only a SHA-256 of each
-- token is stored: a copy of this table lets nobody call the API. Users, projects and roles live in
-- TETHER_IDENTITY_FILE and are looked up again at every validation (a removed role ends its tokens).
CREATE TABLE identity_tokens (
  token_sha256 bytea PRIMARY KEY CHECK (octet_length(token_sha256) = 32),
  audit_id text NOT NULL UNIQUE,
  user_id text NOT NULL,
  project_id text NOT NULL,
  methods text[] NOT NULL,
  issued_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  CHECK (expires_at > issued_at)
);
CREATE INDEX identity_tokens_expires_at ON identity_tokens (expires_at);

-- Down Migration
DROP TABLE identity_tokens;
