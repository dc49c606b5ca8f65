/**
 * All SQL about volume swaps in flight (workflows/swap-volume.ts): the new volume's attachment and
 * its connection_info, kept here between the block storage's answer and the BDM (never in a
 * workflow's history), read by the host's block copy.
 */
import type { Queryable } from './database.ts';
import type { ConnectionInfo } from '../domain/types.ts';

export type VolumeSwapState = 'running' | 'pivoted' | 'completed' | 'rolled-back';

export interface VolumeSwap {
  operationId: string;
  instanceUuid: string;
  bdmUuid: string;
  oldVolumeId: string;
  newVolumeId: string;
  newAttachmentId: string | null;
  connectionInfo: ConnectionInfo | null;
  state: VolumeSwapState;
}

interface Row {
  operation_id: string;
  instance_uuid: string;
  bdm_uuid: string;
  old_volume_id: string;
  new_volume_id: string;
  new_attachment_id: string | null;
  connection_info: ConnectionInfo | null;
  state: VolumeSwapState;
}

function toSwap(r: Row): VolumeSwap {
  return {
    operationId: r.operation_id,
    instanceUuid: r.instance_uuid,
    bdmUuid: r.bdm_uuid,
    oldVolumeId: r.old_volume_id,
    newVolumeId: r.new_volume_id,
    newAttachmentId: r.new_attachment_id,
    connectionInfo: r.connection_info,
    state: r.state,
  };
}

/** Records the swap (idempotent by operation id: a repeat keeps what the first one recorded). */
export async function recordVolumeSwap(db: Queryable, s: Pick<VolumeSwap, 'operationId' | 'instanceUuid' | 'bdmUuid' | 'oldVolumeId' | 'newVolumeId'>): Promise<void> {
  await db.query(
    `INSERT INTO volume_swaps (operation_id, instance_uuid, bdm_uuid, old_volume_id, new_volume_id) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (operation_id) DO NOTHING`,
    [s.operationId, s.instanceUuid, s.bdmUuid, s.oldVolumeId, s.newVolumeId],
  );
}

export async function getVolumeSwap(db: Queryable, operationId: string): Promise<VolumeSwap | null> {
  const { rows } = await db.query<Row>('SELECT * FROM volume_swaps WHERE operation_id = $1', [operationId]);
  return rows[0] ? toSwap(rows[0]) : null;
}

export async function updateVolumeSwap(
  db: Queryable,
  operationId: string,
  patch: { newAttachmentId?: string; connectionInfo?: ConnectionInfo; state?: VolumeSwapState },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE volume_swaps SET
        new_attachment_id = COALESCE($2, new_attachment_id),
        connection_info   = COALESCE($3::jsonb, connection_info),
        state             = COALESCE($4, state),
        updated_at = now()
     WHERE operation_id = $1`,
    [operationId, patch.newAttachmentId ?? null, patch.connectionInfo === undefined ? null : JSON.stringify(patch.connectionInfo), patch.state ?? null],
  );
  return (rowCount ?? 0) > 0;
}

/** Swaps of the instance that have not ended (the checker's "work in flight"). */
export async function runningVolumeSwaps(db: Queryable, instanceUuid: string): Promise<VolumeSwap[]> {
  const { rows } = await db.query<Row>(`SELECT * FROM volume_swaps WHERE instance_uuid = $1 AND state IN ('running', 'pivoted') ORDER BY created_at`, [instanceUuid]);
  return rows.map(toSwap);
}
