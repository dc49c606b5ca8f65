/**
 * All SQL about operation generations: every volume operation on a (server, volume) pair takes one
 * from a single sequence, and the pair keeps the newest. A host step carries its operation's
 * generation and is refused when the pair has moved on to a newer one.
 */
import type { Queryable } from './database.ts';

/**
 * A new generation for the operation, made the newest of each pair. Taking it again (a retried step)
 * gives a newer number, which is as good: the operation uses whichever its history recorded.
 */
export async function takeGeneration(db: Queryable, operationId: string, pairs: Array<{ instanceUuid: string; volumeId: string }>): Promise<number> {
  const { rows } = await db.query<{ g: string }>(`SELECT nextval('volume_operation_generation') AS g`);
  const generation = Number(rows[0]!.g);
  for (const p of pairs) {
    await db.query(
      `INSERT INTO volume_operation_generations (instance_uuid, volume_id, generation, operation_id) VALUES ($1, $2, $3, $4)
       ON CONFLICT (instance_uuid, volume_id) DO UPDATE SET generation = EXCLUDED.generation, operation_id = EXCLUDED.operation_id, updated_at = now()
       WHERE volume_operation_generations.generation < EXCLUDED.generation`,
      [p.instanceUuid, p.volumeId, generation, operationId],
    );
  }
  return generation;
}

/** The pair's newest generation and the operation that holds it; null when no operation took one. */
export async function currentGeneration(db: Queryable, instanceUuid: string, volumeId: string): Promise<{ generation: number; operationId: string } | null> {
  const { rows } = await db.query<{ generation: string; operation_id: string }>(
    'SELECT generation, operation_id FROM volume_operation_generations WHERE instance_uuid = $1 AND volume_id = $2',
    [instanceUuid, volumeId],
  );
  return rows[0] ? { generation: Number(rows[0].generation), operationId: rows[0].operation_id } : null;
}
