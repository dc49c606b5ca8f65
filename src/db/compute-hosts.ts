/** All SQL about compute hosts: registration and heartbeat, Nova's service flags, and fences. */
import type { Queryable } from './database.ts';
import type { ComputeHostRecord } from '../domain/compute-hosts.ts';

interface HostRow {
  host: string;
  service_id: number;
  service_uuid: string;
  disabled: boolean;
  disabled_reason: string | null;
  forced_down: boolean;
  last_seen_at: Date | null;
  fenced: boolean;
  fence_epoch: string;
  fenced_at: Date | null;
  fenced_by: string | null;
  fence_reason: string | null;
  updated_at: Date;
}

function toHost(r: HostRow): ComputeHostRecord {
  return {
    host: r.host,
    serviceId: r.service_id,
    serviceUuid: r.service_uuid,
    disabled: r.disabled,
    disabledReason: r.disabled_reason,
    forcedDown: r.forced_down,
    lastSeenAt: r.last_seen_at?.toISOString() ?? null,
    fence: r.fenced
      ? { epoch: Number(r.fence_epoch), fencedAt: (r.fenced_at ?? r.updated_at).toISOString(), fencedBy: r.fenced_by, reason: r.fence_reason }
      : null,
    updatedAt: r.updated_at.toISOString(),
  };
}

/** The host's row, made when first needed (an agent's start, a fence, an operator's flag). */
async function ensureHost(db: Queryable, host: string): Promise<void> {
  await db.query('INSERT INTO compute_hosts (host) VALUES ($1) ON CONFLICT (host) DO NOTHING', [host]);
}

/** The agent's heartbeat (at start and every resync): the host exists and is alive now. */
export async function touchHost(db: Queryable, host: string): Promise<ComputeHostRecord> {
  const { rows } = await db.query<HostRow>(
    `INSERT INTO compute_hosts (host, last_seen_at) VALUES ($1, now())
     ON CONFLICT (host) DO UPDATE SET last_seen_at = now()
     RETURNING *`,
    [host],
  );
  return toHost(rows[0]!);
}

export async function getComputeHost(db: Queryable, host: string): Promise<ComputeHostRecord | null> {
  const { rows } = await db.query<HostRow>('SELECT * FROM compute_hosts WHERE host = $1', [host]);
  return rows[0] ? toHost(rows[0]) : null;
}

export async function getComputeHostByServiceUuid(db: Queryable, serviceUuid: string): Promise<ComputeHostRecord | null> {
  const { rows } = await db.query<HostRow>('SELECT * FROM compute_hosts WHERE service_uuid = $1', [serviceUuid]);
  return rows[0] ? toHost(rows[0]) : null;
}

/** Every host that registered, and every host some live instance names (registered on the way). */
export async function listComputeHosts(db: Queryable, filter: { host?: string } = {}): Promise<ComputeHostRecord[]> {
  await db.query(
    `INSERT INTO compute_hosts (host)
     SELECT DISTINCT host FROM instances WHERE deleted_at IS NULL AND host IS NOT NULL AND ($1::text IS NULL OR host = $1)
     ON CONFLICT (host) DO NOTHING`,
    [filter.host ?? null],
  );
  const { rows } = await db.query<HostRow>('SELECT * FROM compute_hosts WHERE ($1::text IS NULL OR host = $1) ORDER BY created_at, host', [filter.host ?? null]);
  return rows.map(toHost);
}

/** Nova's service update: forced_down, disabled with its reason. Absent fields stay as they are. */
export async function updateComputeHost(
  db: Queryable,
  host: string,
  patch: { forcedDown?: boolean; disabled?: boolean; disabledReason?: string | null },
): Promise<ComputeHostRecord> {
  await ensureHost(db, host);
  const { rows } = await db.query<HostRow>(
    `UPDATE compute_hosts SET
        forced_down = COALESCE($2, forced_down),
        disabled = COALESCE($3, disabled),
        disabled_reason = CASE WHEN $4::boolean THEN $5 WHEN $3 = false THEN NULL ELSE disabled_reason END,
        updated_at = now()
     WHERE host = $1 RETURNING *`,
    [host, patch.forcedDown ?? null, patch.disabled ?? null, patch.disabledReason !== undefined, patch.disabledReason ?? null],
  );
  return toHost(rows[0]!);
}

/**
 * Fences the host: its agent must clean up before it serves any instance queue again. Every call
 * starts a new epoch, so an agent cleaning up for an earlier fence does not clear this one.
 */
export async function fenceHost(db: Queryable, host: string, by: { operationId: string; reason: string }): Promise<number> {
  await ensureHost(db, host);
  const { rows } = await db.query<{ fence_epoch: string }>(
    `UPDATE compute_hosts SET fenced = true, fence_epoch = fence_epoch + 1, fenced_at = now(), fenced_by = $2, fence_reason = $3, updated_at = now()
     WHERE host = $1 RETURNING fence_epoch`,
    [host, by.operationId, by.reason],
  );
  return Number(rows[0]!.fence_epoch);
}

/** The agent's cleanup for `epoch` is done: the fence goes, unless a newer one came meanwhile. */
export async function clearFence(db: Queryable, host: string, epoch: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE compute_hosts SET fenced = false, cleaned_epoch = $2, cleaned_at = now(), updated_at = now()
     WHERE host = $1 AND fenced AND fence_epoch = $2`,
    [host, epoch],
  );
  return (rowCount ?? 0) > 0;
}
