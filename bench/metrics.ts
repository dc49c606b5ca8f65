/** The Temporal dev server's Prometheus metrics (its /metrics endpoint): poll RPCs and the like. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

export async function scrape(url: string | undefined): Promise<Sample[]> {
  if (!url) return [];
  try {
    const res = await fetch(url);
    return parsePrometheus(await res.text());
  } catch {
    return [];
  }
}

/**
 * Poll RPCs the frontend has received so far in `namespace` (the dev server's own system workers
 * poll in `temporal_system`), by operation (PollActivityTaskQueue, PollWorkflowTaskQueue): the
 * frontend's `service_requests` counter, which counts a long poll when it arrives.
 */
export function pollRequests(samples: Sample[], namespace = 'default'): Record<string, number> {
  return byPollOperation(samples, 'service_requests', namespace);
}

/** Long polls the frontend holds open right now (gauge `service_pending_requests`): about one per idle poller. */
export function pendingPolls(samples: Sample[], namespace = 'default'): Record<string, number> {
  return byPollOperation(samples, 'service_pending_requests', namespace);
}

function byPollOperation(samples: Sample[], metric: string, namespace: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== metric || s.labels.namespace !== namespace || s.labels.service_name !== 'frontend') continue;
    const op = s.labels.operation ?? '';
    if (!op.startsWith('Poll')) continue;
    out[op] = (out[op] ?? 0) + s.value;
  }
  return out;
}

export function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(after), ...Object.keys(before)])) out[k] = (after[k] ?? 0) - (before[k] ?? 0);
  return out;
}
