/**
 * Compute-agent metrics: the task queues an agent serves (its host queue and one per instance), and
 * optionally each queue's backlog (activity tasks waiting for this agent), read from Temporal's
 * DescribeTaskQueue at scrape time.
 */
import type { Client } from '@temporalio/client';
import { registry } from './tether-metrics.ts';

type DescribeTaskQueue = Pick<Client['workflowService'], 'describeTaskQueue'>;

export interface AgentMetricsSource {
  host: string;
  servedQueues(): string[];
  /** For the backlog; without it only the queue count is reported. */
  workflowService?: DescribeTaskQueue;
  namespace?: string;
}

const agents = new Set<AgentMetricsSource>();

registry.gauge<'host'>({
  name: 'tether_agent_task_queues',
  help: 'Task queues a compute agent serves (its host queue plus one per instance on the host).',
  labelNames: ['host'],
  collect: (g) => {
    g.reset();
    for (const a of agents) g.set({ host: a.host }, a.servedQueues().length);
  },
});

const ACTIVITY_QUEUE = 2; // temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

registry.gauge<'host' | 'task_queue'>({
  name: 'tether_task_queue_backlog',
  help: 'Approximate number of activity tasks waiting in each task queue a compute agent serves (Temporal DescribeTaskQueue stats).',
  labelNames: ['host', 'task_queue'],
  collect: async (g) => {
    const rows: Array<{ host: string; queue: string; backlog: number }> = [];
    for (const a of agents) {
      if (!a.workflowService) continue;
      const queues = a.servedQueues();
      // a few at a time: an agent may host many instances
      for (let i = 0; i < queues.length; i += 8) {
        await Promise.all(
          queues.slice(i, i + 8).map(async (queue) => {
            try {
              const res = await withTimeout(
                a.workflowService!.describeTaskQueue({ namespace: a.namespace ?? 'default', taskQueue: { name: queue, kind: 1 }, taskQueueType: ACTIVITY_QUEUE, reportStats: true }),
                2_000,
              );
              rows.push({ host: a.host, queue, backlog: Number(res.stats?.approximateBacklogCount ?? 0) });
            } catch {
              // unknown this time; the series is left out rather than reported wrong
            }
          }),
        );
      }
    }
    g.reset();
    for (const r of rows) g.set({ host: r.host, task_queue: r.queue }, r.backlog);
  },
});

/** Reports an agent's queues (and their backlog when given a workflowService) until the returned function is called. */
export function registerComputeAgentMetrics(source: AgentMetricsSource): () => void {
  agents.add(source);
  return () => agents.delete(source);
}
