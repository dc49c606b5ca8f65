/**
 * The steps a workflow run took, in order, read from its history: regular activities
 * (ActivityTaskScheduled) and local activities (the MarkerRecorded event the SDK writes for each).
 */
import type { temporal } from '@temporalio/proto';

export interface HistoryStep {
  name: string;
  kind: 'activity' | 'local';
}

/** Activity type of a local-activity marker (its `data` detail is JSON with `activity_type`). */
function localActivityType(event: temporal.api.history.v1.IHistoryEvent): string | undefined {
  const attrs = event.markerRecordedEventAttributes;
  if (!attrs || attrs.markerName !== 'core_local_activity') return undefined;
  const data = attrs.details?.data?.payloads?.[0]?.data;
  if (!data) return undefined;
  const parsed = JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string };
  return parsed.activity_type;
}

export function historySteps(history: temporal.api.history.v1.IHistory): HistoryStep[] {
  const steps: HistoryStep[] = [];
  for (const event of history.events ?? []) {
    const scheduled = event.activityTaskScheduledEventAttributes?.activityType?.name;
    if (scheduled) steps.push({ name: scheduled, kind: 'activity' });
    const local = localActivityType(event);
    if (local) steps.push({ name: local, kind: 'local' });
  }
  return steps;
}
