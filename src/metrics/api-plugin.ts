/**
 * `GET /metrics` on the API: this process's registry plus attaches and detaches in flight, counted
 * in Temporal's visibility store (workflows of the control task queue still running) at scrape
 * time. Every API replica reports the same cluster-wide number: aggregate it with max(), not sum().
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Client } from '@temporalio/client';
import { Registry } from './registry.ts';
import { registry } from './tether-metrics.ts';

export const operationsInFlight = registry.gauge<'workflow_type'>({
  name: 'tether_operations_in_flight',
  help: 'Workflow runs of tether (attachVolume, detachVolume) still running, from Temporal visibility (cluster-wide).',
  labelNames: ['workflow_type'],
});

export interface MetricsRouteOptions {
  client: Client;
  controlTaskQueue: string;
}

const COUNTED = ['attachVolume', 'detachVolume'] as const;

export const metricsRoutes: FastifyPluginAsync<MetricsRouteOptions> = async (app, o) => {
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    await Promise.all(
      COUNTED.map(async (type) => {
        try {
          const { count } = await o.client.workflow.count(`WorkflowType = '${type}' AND ExecutionStatus = 'Running' AND TaskQueue = '${o.controlTaskQueue.replace(/'/g, "''")}'`);
          operationsInFlight.set({ workflow_type: type }, count);
        } catch {
          // Temporal unreachable: the last values stay, the scrape still answers
        }
      }),
    );
    return reply.header('content-type', Registry.contentType).send(await registry.metricsText());
  });
};
