/**
 * Nova's instance actions read from Temporal: every workflow run on a server is an action (listed
 * from the visibility store by the server's InstanceUuid search attribute, one call, no history
 * read), keyed by the request id the service put in the run's memo; `show` reads the steps of that
 * one run: a saga's `progress` query (its steps with status, times and the reason of a failure,
 * compensations included), or, for a run without one or when no worker answers, its history (one
 * event per activity).
 */
import { randomUUID } from 'node:crypto';
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import type { Caller } from '../auth/caller.ts';
import { actionOfWorkflow, eventOfStep, type ActionEvent, type ActionMemo, type InstanceAction } from '../domain/instance-actions.ts';
import type { OperationProgress } from '../domain/contracts/operation.ts';
import { PROGRESS_QUERY } from '../domain/contracts/operation.ts';
import type { StepProgress } from '../domain/steps.ts';
import type { Instance } from '../domain/types.ts';
import { ComputeHost, InstanceUuid } from '../temporal/search-attributes.ts';

/** The start options that make a workflow run an action: who asked and with which request id (memo), and what it reads as in the Temporal UI. */
export interface ActionStartOptions {
  memo: Record<string, unknown>;
  staticSummary: string;
  staticDetails: string;
}

/** A fresh request id, Nova's shape, for work not started by an API request (the CLI). */
export function newRequestId(): string {
  return `req-${randomUUID()}`;
}

/**
 * The memo, summary and details of a workflow start. `summary` is one line a person reads in the
 * Temporal UI's list ("attach volume data1 to server web1"); the details add the ids and who asked.
 */
export function actionStart(caller: Caller, requestId: string, summary: string, ids: Record<string, string | null | undefined>): ActionStartOptions {
  const memo: ActionMemo = { requestId, userId: caller.userId, projectId: caller.projectId };
  const lines = [
    `request: ${requestId}`,
    `asked by: ${caller.userName} (user ${caller.userId}, project ${caller.projectId})`,
    ...Object.entries(ids).flatMap(([k, v]) => (v ? [`${k}: ${v}`] : [])),
  ];
  return { memo: { ...memo }, staticSummary: summary, staticDetails: lines.join('\n') };
}

/** A server or a volume as a summary names it: its name when it has one, else its id. */
export function nameOrId(thing: { name?: string | null; id?: string; uuid?: string }): string {
  return thing.name || thing.id || thing.uuid || '?';
}

function memoOf(info: WorkflowExecutionInfo): Partial<ActionMemo> {
  const m = (info.memo ?? {}) as Record<string, unknown>;
  const text = (k: keyof ActionMemo) => (typeof m[k] === 'string' ? (m[k] as string) : undefined);
  return { requestId: text('requestId'), userId: text('userId'), projectId: text('projectId') };
}

const FAILED_STATUSES = new Set(['FAILED', 'TERMINATED', 'TIMED_OUT', 'CANCELLED']);

function actionOf(info: WorkflowExecutionInfo, instance: Instance): InstanceAction {
  const memo = memoOf(info);
  const startTime = info.startTime.toISOString();
  return {
    action: actionOfWorkflow(info.type),
    instanceUuid: instance.uuid,
    // runs started before the request id was carried: an id of the same shape, stable (from the run)
    requestId: memo.requestId ?? `req-${info.runId}`,
    userId: memo.userId ?? null,
    projectId: memo.projectId ?? instance.projectId,
    startTime,
    updatedAt: info.closeTime?.toISOString() ?? startTime,
    message: FAILED_STATUSES.has(info.status.name) ? 'Error' : null,
    workflowId: info.workflowId,
    runId: info.runId,
    workflowType: info.type,
    status: info.status.name,
    host: info.typedSearchAttributes.get(ComputeHost) || instance.host || null,
  };
}

/** Every action on the server, newest first (Nova's order: start time, then request id). */
export async function listActions(client: Client, instance: Instance): Promise<InstanceAction[]> {
  const actions: InstanceAction[] = [];
  // the uuid comes from tether's database (never from the request): safe inside the query
  for await (const info of client.workflow.list({ query: `${InstanceUuid.name} = '${instance.uuid}'` })) {
    actions.push(actionOf(info, instance));
  }
  return actions.sort((a, b) => b.startTime.localeCompare(a.startTime) || b.requestId.localeCompare(a.requestId));
}

/** How long show waits for a worker to answer the progress query before it reads the history itself. */
const QUERY_DEADLINE_MS = 10_000;

/** The workflow types whose runs answer the `progress` query with their saga's steps. */
const SAGA_TYPES = new Set(['attachVolume', 'detachVolume', 'forceDetachVolume', 'extendVolume']);

/** The events of an action, newest first (Nova's order). */
export async function actionEvents(client: Client, action: InstanceAction): Promise<ActionEvent[]> {
  const handle = client.workflow.getHandle(action.workflowId, action.runId);
  let events: ActionEvent[] | null = null;
  if (SAGA_TYPES.has(action.workflowType)) {
    try {
      // a query of a closed run is answered by a worker replaying it: not for ever when none serves the queue
      const progress = await client.withDeadline(Date.now() + QUERY_DEADLINE_MS, () => handle.query<OperationProgress>(PROGRESS_QUERY));
      events = eventsOfSteps(progress.steps, action.host);
    } catch {
      events = null; // no worker answered (or an old run without the query): read the history
    }
  }
  events ??= eventsOfHistory(await handle.fetchHistory(), action.host);
  return events.reverse();
}

/**
 * A saga's steps as events, oldest first. Every step after the first failed one is a compensation
 * (the saga stops at its first failure and undoes what it did, newest first).
 */
export function eventsOfSteps(steps: StepProgress[], host: string | null): ActionEvent[] {
  const firstFailure = steps.findIndex((s) => s.status === 'failed');
  return steps.map((s, i) => {
    const done = s.status !== 'running';
    return {
      event: eventOfStep(s.step, s.status === 'compensated' || (firstFailure >= 0 && i > firstFailure)),
      startTime: s.startedAt,
      finishTime: done ? (s.endedAt ?? null) : null,
      result: !done ? null : s.status === 'failed' ? 'Error' : 'Success',
      details: s.status === 'failed' ? (s.error ?? 'failed') : null,
      host,
    };
  });
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

function timeOf(event: HistoryEvent): string {
  const t = event.eventTime;
  if (!t) return new Date(0).toISOString();
  return new Date(Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString();
}

function protoTime(t: { seconds?: number | string; nanos?: number } | null | undefined): string | null {
  if (!t) return null;
  return new Date(Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString();
}

function failureText(f: temporal.api.failure.v1.IFailure | null | undefined): string {
  let innermost = f;
  while (innermost?.cause) innermost = innermost.cause;
  return innermost?.message || f?.message || 'failed';
}

/**
 * A run's activities as events, oldest first: each activity (its scheduling to its completion,
 * failure or time-out) and each local activity (its marker: schedule and completion times inside).
 */
export function eventsOfHistory(history: temporal.api.history.v1.IHistory, host: string | null): ActionEvent[] {
  const events: ActionEvent[] = [];
  const bySchedule = new Map<string, ActionEvent>();
  const finish = (scheduledEventId: unknown, event: HistoryEvent, details: string | null) => {
    const e = bySchedule.get(String(scheduledEventId));
    if (!e) return;
    e.finishTime = timeOf(event);
    e.result = details === null ? 'Success' : 'Error';
    e.details = details;
  };
  for (const event of history.events ?? []) {
    const scheduled = event.activityTaskScheduledEventAttributes;
    if (scheduled?.activityType?.name) {
      const e: ActionEvent = { event: eventOfStep(scheduled.activityType.name), startTime: timeOf(event), finishTime: null, result: null, details: null, host };
      bySchedule.set(String(event.eventId), e);
      events.push(e);
      continue;
    }
    const a = event.activityTaskCompletedEventAttributes;
    if (a) finish(a.scheduledEventId, event, null);
    const f = event.activityTaskFailedEventAttributes;
    if (f) finish(f.scheduledEventId, event, failureText(f.failure));
    const t = event.activityTaskTimedOutEventAttributes;
    if (t) finish(t.scheduledEventId, event, `timed out: ${failureText(t.failure)}`);
    const c = event.activityTaskCanceledEventAttributes;
    if (c) finish(c.scheduledEventId, event, 'cancelled');
    const marker = event.markerRecordedEventAttributes;
    if (marker?.markerName === 'core_local_activity') {
      const raw = marker.details?.data?.payloads?.[0]?.data;
      if (!raw) continue;
      const data = JSON.parse(Buffer.from(raw).toString('utf8')) as {
        activity_type?: string;
        original_schedule_time?: { seconds?: number; nanos?: number };
        complete_time?: { seconds?: number; nanos?: number };
      };
      if (!data.activity_type) continue;
      const failed = marker.failure ? failureText(marker.failure) : null;
      events.push({
        event: eventOfStep(data.activity_type),
        startTime: protoTime(data.original_schedule_time) ?? timeOf(event),
        finishTime: protoTime(data.complete_time) ?? timeOf(event),
        result: failed === null ? 'Success' : 'Error',
        details: failed,
        host,
      });
    }
  }
  return events;
}
