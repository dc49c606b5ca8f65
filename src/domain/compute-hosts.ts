/**
 * Compute hosts as tether knows them (Nova's compute services), and the fence a force detach puts on a
 * host it could not reach. Types only; safe to import from workflows.
 */

export interface ComputeHostRecord {
  host: string;
  /** Nova's service id below compute API 2.53. */
  serviceId: number;
  /** Nova's service id from compute API 2.53 on. */
  serviceUuid: string;
  disabled: boolean;
  disabledReason: string | null;
  /** An operator said the host is down (Nova's forced_down): a detach of its servers' volumes fences it at once. */
  forcedDown: boolean;
  /** The agent's last resync; null when it never started. */
  lastSeenAt: string | null;
  fence: HostFence | null;
  updatedAt: string;
}

/** A host some operation could not reach, marked so that its agent cleans up before it serves anything again. */
export interface HostFence {
  epoch: number;
  fencedAt: string;
  /** The workflow that fenced it. */
  fencedBy: string | null;
  reason: string | null;
}

/** How long without a resync before a compute service counts as down (Nova's service_down_time). */
export const SERVICE_DOWN_SECONDS = 60;

export function serviceState(h: Pick<ComputeHostRecord, 'lastSeenAt' | 'forcedDown'>, now: Date = new Date()): 'up' | 'down' {
  if (h.forcedDown || h.lastSeenAt === null) return 'down';
  return now.getTime() - Date.parse(h.lastSeenAt) <= SERVICE_DOWN_SECONDS * 1000 ? 'up' : 'down';
}
