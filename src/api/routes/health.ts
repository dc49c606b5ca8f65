/**
 * GET /healthz: 200 when the database and Temporal answer and the control-plane worker and this
 * compute host's agent are polling their task queues; 503 with the failing checks otherwise.
 */
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Client } from '@temporalio/client';
import type { Queryable } from '../../db/database.ts';
import { hostTaskQueue } from '../../domain/task-queues.ts';

export interface HealthDeps {
  db: Queryable;
  client: Client;
  controlTaskQueue: string;
  computeHost: string;
}

/** temporal.api.enums.v1.TaskQueueType */
const TASK_QUEUE_TYPE = { workflow: 1, activity: 2 } as const;
type PollerKind = keyof typeof TASK_QUEUE_TYPE;

/** A poller that has not polled for this long is gone (idle long polls are renewed about every minute). */
const POLLER_FRESH_MS = 90_000;
const CHECK_TIMEOUT_MS = 3_000;

const Check = Type.Object({ status: Type.Union([Type.Literal('ok'), Type.Literal('fail')]), message: Type.Optional(Type.String()) });
const Health = Type.Object({ status: Type.Union([Type.Literal('ok'), Type.Literal('fail')]), checks: Type.Record(Type.String(), Check) });

async function run(check: () => Promise<void>): Promise<{ status: 'ok' } | { status: 'fail'; message: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  try {
    await Promise.race([check(), timeout]);
    return { status: 'ok' };
  } catch (err) {
    return { status: 'fail', message: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

export const healthRoutes: FastifyPluginAsyncTypebox<HealthDeps> = async (app, deps) => {
  const pollers = async (taskQueue: string, kinds: PollerKind[]) => {
    for (const kind of kinds) {
      const { pollers: found } = await deps.client.workflowService.describeTaskQueue({
        namespace: deps.client.options.namespace,
        taskQueue: { name: taskQueue },
        taskQueueType: TASK_QUEUE_TYPE[kind],
      });
      const fresh = (found ?? []).filter((p) => {
        const seconds = Number(p.lastAccessTime?.seconds ?? 0);
        return Date.now() - seconds * 1000 < POLLER_FRESH_MS;
      });
      if (fresh.length === 0) throw new Error(`no ${kind} poller on task queue ${taskQueue}`);
    }
  };

  app.get(
    '/healthz',
    { schema: { summary: 'Health of the API and of what it depends on', tags: ['health'], response: { 200: Health, 503: Health } } },
    async (_request, reply) => {
      const [database, temporal, controlPlane, computeAgent] = await Promise.all([
        run(async () => void (await deps.db.query('SELECT 1'))),
        run(async () => void (await deps.client.workflowService.getSystemInfo({}))),
        run(() => pollers(deps.controlTaskQueue, ['workflow', 'activity'])),
        run(() => pollers(hostTaskQueue(deps.computeHost), ['activity'])),
      ]);
      const checks = { database, temporal, controlPlane, computeAgent };
      const ok = Object.values(checks).every((c) => c.status === 'ok');
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'fail', checks });
    },
  );
};
