/**
 * What every host step that changes a domain's disks checks first, in PostgreSQL:
 * - the host is not fenced (a force detach could not reach it; until its agent has cleaned up, it
 *   changes nothing — the step is retried after the cleanup);
 * - the step's operation still owns the (server, volume) pair: a step whose generation is older than
 *   the pair's newest is refused for good (a late step of an older operation must never undo a newer
 *   one). Steps of runs started before generations existed carry none and are not compared.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Queryable } from '../../src/db/database.ts';

export interface GuardedStep {
  instanceUuid: string;
  volumeId: string;
  /** The operation's generation (src/db/operation-generations.ts); absent for runs older than generations. */
  generation?: number | undefined;
}

/** The type of the final failure of a step whose operation was overtaken by a newer one on the same pair. */
export const OPERATION_SUPERSEDED = 'OperationSuperseded';
/** The type of the (retried) failure of a step on a fenced host before its agent has cleaned up. */
export const HOST_FENCED = 'HostFenced';

export function createStepGuard(deps: { db: Queryable; host: string }) {
  return async function guardHostStep(step: string, s: GuardedStep): Promise<void> {
    const { rows } = await deps.db.query<{ fenced: boolean | null; generation: string | null; operation_id: string | null }>(
      `SELECT (SELECT fenced FROM compute_hosts WHERE host = $1) AS fenced, g.generation, g.operation_id
       FROM (SELECT 1) one LEFT JOIN volume_operation_generations g ON g.instance_uuid = $2 AND g.volume_id = $3`,
      [deps.host, s.instanceUuid, s.volumeId],
    );
    const r = rows[0]!;
    if (r.fenced) {
      throw ApplicationFailure.retryable(`Host ${deps.host} is fenced: its compute agent cleans up before it changes any domain (${step} waits)`, HOST_FENCED);
    }
    if (s.generation !== undefined && r.generation !== null && Number(r.generation) > s.generation) {
      throw ApplicationFailure.nonRetryable(
        `Step ${step} of generation ${s.generation} refused: operation ${r.operation_id} (generation ${r.generation}) now owns volume ${s.volumeId} on instance ${s.instanceUuid}`,
        OPERATION_SUPERSEDED,
      );
    }
  };
}

export type StepGuard = ReturnType<typeof createStepGuard>;
