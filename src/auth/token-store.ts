/**
 * Tokens of tether's own identity in PostgreSQL (table identity_tokens): opaque random strings,
 * of which only the SHA-256 is stored. Expired tokens are deleted as new ones are issued.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Queryable } from '../db/database.ts';

export interface StoredToken {
  auditId: string;
  userId: string;
  projectId: string;
  methods: string[];
  issuedAt: Date;
  expiresAt: Date;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class TokenStore {
  constructor(private readonly db: Queryable) {}

  /** A new token (256 random bits, base64url) valid for `ttlSeconds`. */
  async issue(spec: { userId: string; projectId: string; methods: string[]; ttlSeconds: number }): Promise<{ token: string; stored: StoredToken }> {
    const token = randomBytes(32).toString('base64url');
    const auditId = randomBytes(16).toString('base64url').slice(0, 22);
    await this.db.query(`DELETE FROM identity_tokens WHERE expires_at < now() - interval '1 hour'`);
    const { rows } = await this.db.query<{ issued_at: Date; expires_at: Date }>(
      `INSERT INTO identity_tokens (token_sha256, audit_id, user_id, project_id, methods, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
       RETURNING issued_at, expires_at`,
      [digest(token), auditId, spec.userId, spec.projectId, spec.methods, spec.ttlSeconds],
    );
    const row = rows[0]!;
    return { token, stored: { auditId, userId: spec.userId, projectId: spec.projectId, methods: spec.methods, issuedAt: row.issued_at, expiresAt: row.expires_at } };
  }

  /** The token's record while it is neither expired nor revoked; null otherwise. */
  async find(token: string): Promise<StoredToken | null> {
    const { rows } = await this.db.query<{ audit_id: string; user_id: string; project_id: string; methods: string[]; issued_at: Date; expires_at: Date }>(
      `SELECT audit_id, user_id, project_id, methods, issued_at, expires_at FROM identity_tokens
        WHERE token_sha256 = $1 AND revoked_at IS NULL AND expires_at > now()`,
      [digest(token)],
    );
    const r = rows[0];
    return r ? { auditId: r.audit_id, userId: r.user_id, projectId: r.project_id, methods: r.methods, issuedAt: r.issued_at, expiresAt: r.expires_at } : null;
  }

  /** True when a live token was revoked. */
  async revoke(token: string): Promise<boolean> {
    const { rowCount } = await this.db.query(`UPDATE identity_tokens SET revoked_at = now() WHERE token_sha256 = $1 AND revoked_at IS NULL AND expires_at > now()`, [
      digest(token),
    ]);
    return (rowCount ?? 0) > 0;
  }
}
