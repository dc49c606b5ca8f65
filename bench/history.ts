/**
 * Where the time goes, read from workflow histories: every interval between two consecutive
 * events of a run is charged to what the run was waiting for at that moment (a workflow task in
 * the queue, a workflow task in the worker, an activity in its queue, an activity executing), so
 * the parts add up to the run's duration. Also: schedule-to-start and execution per activity type,
 * and events per run.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { median } from './stats.ts';

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

function ms(t: HistoryEvent['eventTime']): number {
  if (!t) return Number.NaN;
  return Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6;
}

function kind(e: HistoryEvent): string {
  for (const key of Object.keys(e)) {
    if (key.endsWith('EventAttributes') && (e as Record<string, unknown>)[key] != null) {
      const name = key.slice(0, -'EventAttributes'.length);
      return name.charAt(0).toUpperCase() + name.slice(1);
    }
  }
  return 'Unknown';
}

export interface RunBreakdown {
  workflowType: string;
  durationMs: number;
  events: number;
  eventsByType: Record<string, number>;
  /** ms charged to each wait, adding up to durationMs */
  parts: Record<string, number>;
  activities: Array<{ type: string; queue: 'control' | 'instance'; scheduleToStartMs: number; executionMs: number }>;
  localActivities: number;
  workflowTasks: number;
}

export function analyze(events: HistoryEvent[]): RunBreakdown {
  const sorted = [...events].sort((a, b) => ms(a.eventTime) - ms(b.eventTime) || Number(a.eventId) - Number(b.eventId));
  const scheduled = new Map<string, { type: string; queue: 'control' | 'instance'; at: number }>();
  const started = new Map<string, number>();
  const activities: RunBreakdown['activities'] = [];
  for (const e of events) {
    const id = String(e.eventId);
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(id, { type: s.activityType?.name ?? '?', queue: s.taskQueue?.name?.startsWith('instance-') ? 'instance' : 'control', at: ms(e.eventTime) });
    const st = e.activityTaskStartedEventAttributes;
    if (st) started.set(String(st.scheduledEventId), ms(e.eventTime));
    const done = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes;
    if (done) {
      const sch = scheduled.get(String(done.scheduledEventId));
      const start = started.get(String(done.scheduledEventId));
      if (sch && start !== undefined) activities.push({ type: sch.type, queue: sch.queue, scheduleToStartMs: start - sch.at, executionMs: ms(e.eventTime) - start });
    }
  }
  const queueOf = new Map<string, 'control' | 'instance'>();
  for (const [id, s] of scheduled) queueOf.set(id, s.queue);
  const parts: Record<string, number> = {};
  const charge = (label: string, v: number) => (parts[label] = (parts[label] ?? 0) + v);
  for (let i = 1; i < sorted.length; i++) {
    const e = sorted[i]!;
    const dt = ms(e.eventTime) - ms(sorted[i - 1]!.eventTime);
    const k = kind(e);
    if (k === 'WorkflowTaskStarted') charge('workflow task: waiting in queue', dt);
    else if (k === 'WorkflowTaskCompleted') charge('workflow task: in the worker (incl. local activities)', dt);
    else if (k === 'WorkflowTaskScheduled') charge('workflow task: being scheduled (history service)', dt);
    else if (k === 'ActivityTaskStarted') {
      const q = queueOf.get(String(e.activityTaskStartedEventAttributes?.scheduledEventId)) ?? 'control';
      charge(`activity: waiting in ${q} queue`, dt);
    } else if (k === 'ActivityTaskCompleted' || k === 'ActivityTaskFailed') charge('activity: executing (incl. completion RPC)', dt);
    else charge('other', dt);
  }
  const eventsByType: Record<string, number> = {};
  for (const e of events) eventsByType[kind(e)] = (eventsByType[kind(e)] ?? 0) + 1;
  const first = events[0];
  return {
    workflowType: first?.workflowExecutionStartedEventAttributes?.workflowType?.name ?? '?',
    durationMs: ms(sorted[sorted.length - 1]?.eventTime) - ms(sorted[0]?.eventTime),
    events: events.length,
    eventsByType,
    parts,
    activities,
    localActivities: eventsByType['MarkerRecorded'] ?? 0,
    workflowTasks: eventsByType['WorkflowTaskCompleted'] ?? 0,
  };
}

export interface HistorySummary {
  workflowType: string;
  runs: number;
  durationP50Ms: number;
  eventsP50: number;
  eventsByTypeP50: Record<string, number>;
  workflowTasksP50: number;
  localActivitiesP50: number;
  /** median ms per part (medians need not add up exactly) */
  partsP50: Record<string, number>;
  /** per activity type: median schedule-to-start and execution */
  activities: Record<string, { queue: string; n: number; scheduleToStartP50: number; executionP50: number }>;
}

export function summarizeRuns(runs: RunBreakdown[]): HistorySummary | undefined {
  if (runs.length === 0) return undefined;
  const r1 = (v: number) => Math.round(v * 10) / 10;
  const partNames = [...new Set(runs.flatMap((r) => Object.keys(r.parts)))];
  const typeNames = [...new Set(runs.flatMap((r) => Object.keys(r.eventsByType)))];
  const acts: HistorySummary['activities'] = {};
  for (const type of [...new Set(runs.flatMap((r) => r.activities.map((a) => a.type)))]) {
    const all = runs.flatMap((r) => r.activities.filter((a) => a.type === type));
    acts[type] = {
      queue: all[0]!.queue,
      n: all.length,
      scheduleToStartP50: r1(median(all.map((a) => a.scheduleToStartMs))),
      executionP50: r1(median(all.map((a) => a.executionMs))),
    };
  }
  return {
    workflowType: runs[0]!.workflowType,
    runs: runs.length,
    durationP50Ms: r1(median(runs.map((r) => r.durationMs))),
    eventsP50: median(runs.map((r) => r.events)),
    eventsByTypeP50: Object.fromEntries(typeNames.map((t) => [t, median(runs.map((r) => r.eventsByType[t] ?? 0))])),
    workflowTasksP50: median(runs.map((r) => r.workflowTasks)),
    localActivitiesP50: median(runs.map((r) => r.localActivities)),
    partsP50: Object.fromEntries(partNames.map((p) => [p, r1(median(runs.map((r) => r.parts[p] ?? 0)))])),
    activities: acts,
  };
}

/** Histories of the attach and detach runs started on `taskQueue` between `from` and `to` (at most `limit` each). */
export async function historiesBetween(
  client: Client,
  taskQueue: string,
  from: string,
  to: string,
  options: { limit?: number; expected?: number } = {},
): Promise<{ attach?: HistorySummary; detach?: HistorySummary }> {
  const limit = options.limit ?? 20;
  const out: { attach?: HistorySummary; detach?: HistorySummary } = {};
  for (const [key, type] of [['attach', 'attachVolume'], ['detach', 'detachVolume']] as const) {
    const runs: RunBreakdown[] = [];
    const query = `TaskQueue = '${taskQueue}' AND WorkflowType = '${type}' AND ExecutionStatus = 'Completed' AND StartTime >= '${from}' AND StartTime <= '${to}'`;
    // visibility is updated asynchronously: wait (a little) until the closed runs show up
    const want = Math.min(limit, options.expected ?? 1);
    for (let i = 0; i < 50; i++) {
      if ((await client.workflow.count(query)).count >= want) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for await (const w of client.workflow.list({ query })) {
      const history = await client.workflow.getHandle(w.workflowId, w.runId).fetchHistory();
      runs.push(analyze(history.events ?? []));
      if (runs.length >= limit) break;
    }
    const s = summarizeRuns(runs);
    if (s) out[key] = s;
  }
  return out;
}
