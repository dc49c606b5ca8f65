/**
 * tether's own metrics, in one process-wide registry (src/metrics/registry.ts). Which process fills
 * which:
 *   - workers (activity interceptor): step counts, durations and in-flight steps;
 *   - the control plane (workflow interceptor → sink): attaches/detaches by outcome and reason;
 *   - the compute agent: its task queues and their backlog;
 *   - the API (/metrics): operations in flight, from Temporal's visibility store.
 * A metric a process does not fill shows only its HELP and TYPE there.
 */
import { Registry, STEP_BUCKETS } from './registry.ts';

export const registry = new Registry();

export const stepsTotal = registry.counter<'activity' | 'workflow_type' | 'outcome' | 'reason'>({
  name: 'tether_steps_total',
  help: 'Activity executions (saga steps and compensations) by activity, workflow type, outcome (completed, failed, cancelled) and failure reason (the ApplicationFailure type). Each attempt counts.',
  labelNames: ['activity', 'workflow_type', 'outcome', 'reason'],
});

export const stepDuration = registry.histogram<'activity' | 'outcome'>({
  name: 'tether_step_duration_seconds',
  help: 'Duration of one activity attempt, by activity and outcome.',
  labelNames: ['activity', 'outcome'],
  buckets: STEP_BUCKETS,
});

export const stepsInFlight = registry.gauge<'activity'>({
  name: 'tether_steps_in_flight',
  help: 'Activities running in this process now, by activity.',
  labelNames: ['activity'],
});

export const operationsTotal = registry.counter<'workflow_type' | 'outcome' | 'reason'>({
  name: 'tether_operations_total',
  help: 'Finished workflow runs (attachVolume, detachVolume, …) by outcome (succeeded, rolled_back, failed, cancelled, continued_as_new) and failure reason (the failure type, e.g. DiskAttachFailed, VolumeAlreadyAttached).',
  labelNames: ['workflow_type', 'outcome', 'reason'],
});

export const operationDuration = registry.histogram<'workflow_type' | 'outcome'>({
  name: 'tether_operation_duration_seconds',
  help: 'Duration of a workflow run from its start to its end, by workflow type and outcome.',
  labelNames: ['workflow_type', 'outcome'],
  buckets: STEP_BUCKETS,
});

const started = Date.now() / 1000;
registry.gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since the Unix epoch, in seconds.' }).set(undefined, Math.floor(started));
registry.gauge({
  name: 'process_resident_memory_bytes',
  help: 'Resident memory size in bytes.',
  collect: (g) => g.set(undefined, process.memoryUsage.rss()),
});
registry.gauge({
  name: 'nodejs_heap_used_bytes',
  help: 'V8 heap in use, in bytes.',
  collect: (g) => g.set(undefined, process.memoryUsage().heapUsed),
});
