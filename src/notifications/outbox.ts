/**
 * All SQL about the notifications outbox (migrations/1764172800001_notifications-outbox.sql).
 * Events are written by the activities inside the transaction of the state change they report;
 * the publisher claims them with FOR UPDATE SKIP LOCKED, so several publishers never share a row.
 */
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db/database.ts';
import {
  instanceActionVolumePayload,
  priorityOf,
  publisherId,
  type InstanceForPayload,
  type NotificationFault,
  type NotificationPriority,
  type VolumeEventType,
  type VolumePayload,
} from './volume-events.ts';

export interface OutboxNotification {
  seq: number;
  messageId: string;
  eventType: VolumeEventType;
  priority: NotificationPriority;
  publisherId: string;
  payload: VolumePayload;
  operation: string;
  instanceUuid: string;
  volumeId: string;
  createdAt: Date;
  publishedAt: Date | null;
}

interface OutboxRow {
  seq: string;
  message_id: string;
  event_type: VolumeEventType;
  priority: NotificationPriority;
  publisher_id: string;
  payload: VolumePayload;
  operation: string;
  instance_uuid: string;
  volume_id: string;
  created_at: Date;
  published_at: Date | null;
}

function toNotification(r: OutboxRow): OutboxNotification {
  return {
    seq: Number(r.seq),
    messageId: r.message_id,
    eventType: r.event_type,
    priority: r.priority,
    publisherId: r.publisher_id,
    payload: r.payload,
    operation: r.operation,
    instanceUuid: r.instance_uuid,
    volumeId: r.volume_id,
    createdAt: r.created_at,
    publishedAt: r.published_at,
  };
}

export interface VolumeEvent {
  eventType: VolumeEventType;
  /** `<workflow id>/<run id>` of the operation (src/notifications/operation.ts); null: not written. */
  operation: string | null;
  instanceUuid: string;
  volumeId: string;
  fault?: NotificationFault | null;
  /** Written only if this event of the same operation was written (an .end or .error needs its .start). */
  after?: VolumeEventType;
}

/**
 * Writes one event into the outbox, in the caller's transaction; at most one row per (operation,
 * event type), so an activity that runs again writes nothing new. Returns whether a row was written.
 */
export async function recordVolumeEvent(tx: Queryable, e: VolumeEvent): Promise<boolean> {
  if (e.operation === null) return false;
  if (e.after) {
    const { rowCount } = await tx.query('SELECT 1 FROM notifications_outbox WHERE operation = $1 AND event_type = $2', [e.operation, e.after]);
    if (!rowCount) return false;
  }
  const { rows } = await tx.query<InstanceForPayload>(
    `SELECT uuid, name, project_id, host, vm_state, task_state, availability_zone, locked, created_at, updated_at, deleted_at
       FROM instances WHERE uuid = $1`,
    [e.instanceUuid],
  );
  const instance = rows[0];
  if (!instance) return false;
  const { rowCount } = await tx.query(
    `INSERT INTO notifications_outbox (message_id, event_type, priority, publisher_id, payload, operation, instance_uuid, volume_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (operation, event_type) DO NOTHING`,
    [
      randomUUID(),
      e.eventType,
      priorityOf(e.eventType),
      publisherId(instance.host),
      JSON.stringify(instanceActionVolumePayload(instance, e.volumeId, e.fault ?? null)),
      e.operation,
      e.instanceUuid,
      e.volumeId,
    ],
  );
  return (rowCount ?? 0) > 0;
}

/** The oldest unpublished rows that no other publisher holds, locked until the transaction ends. */
export async function claimUnpublished(tx: Queryable, limit: number): Promise<OutboxNotification[]> {
  const { rows } = await tx.query<OutboxRow>(
    `SELECT * FROM notifications_outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [limit],
  );
  return rows.map(toNotification);
}

export async function markPublished(tx: Queryable, seqs: number[]): Promise<void> {
  await tx.query('UPDATE notifications_outbox SET published_at = now() WHERE seq = ANY($1::bigint[])', [seqs]);
}

/** Retention: published rows older than `retentionMs` go; unpublished rows stay whatever their age. */
export async function deletePublishedOlderThan(db: Queryable, retentionMs: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM notifications_outbox WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)`,
    [retentionMs / 1000],
  );
  return rowCount ?? 0;
}

/** The newest rows first (`tether notifications`). */
export async function recentNotifications(db: Queryable, options: { limit: number; instanceUuid?: string }): Promise<OutboxNotification[]> {
  const { rows } = await db.query<OutboxRow>(
    `SELECT * FROM notifications_outbox WHERE ($2::uuid IS NULL OR instance_uuid = $2) ORDER BY seq DESC LIMIT $1`,
    [options.limit, options.instanceUuid ?? null],
  );
  return rows.map(toNotification);
}
