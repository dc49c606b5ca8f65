/**
 * Waiting at process start for a dependency that is not reachable yet (PostgreSQL restarting,
 * Temporal's frontend or libvirtd down for a moment): the call is retried with backoff while it fails for want
 * of a connection, up to TETHER_STARTUP_WAIT_SECONDS; any other error (bad password, bad TLS file,
 * a failing migration) ends the start at once. Found by the chaos storm (docs/chaos.md): a worker
 * restarted while PostgreSQL, Temporal or libvirtd was also down exited with code 1 instead of waiting.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Socket-level errno codes of a peer that is down or not there yet. */
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
/** PostgreSQL: admin/crash shutdown, starting up or in recovery (57P0x); class 08 is "connection exception". */
const PG_CODES = new Set(['57P01', '57P02', '57P03']);
/** gRPC status UNAVAILABLE (what a Temporal client gets from a frontend that is down). */
const GRPC_UNAVAILABLE = 14;
const MESSAGES = /Connection terminated|Connection refused|ECONNREFUSED|the database system is (starting up|shutting down|in recovery mode)|tcp connect error|Failed to connect before the deadline|Failed to connect socket/i;

/** True when `err` (or an error in its cause chain) says the other side cannot be reached right now. */
export function isUnreachable(err: unknown, depth = 0): boolean {
  if (depth > 8 || typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string' && (NET_CODES.has(e.code) || PG_CODES.has(e.code) || /^08[0-9A-Z]{3}$/.test(e.code))) return true;
  if (e.code === GRPC_UNAVAILABLE) return true;
  if (e.name === 'TransportError') return true;
  if (typeof e.message === 'string' && MESSAGES.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isUnreachable(x, depth + 1))) return true;
  return isUnreachable(e.cause, depth + 1);
}

export interface DependencyWaitOptions {
  /** Give up (throw the last error) after this long. 0: no waiting, one try. */
  timeoutMs: number;
  /** Told about each failed try that will be retried. */
  onRetry?: (what: string, err: unknown, attempt: number) => void;
  /** First pause between tries; doubled each time up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

/** Calls `fn` until it succeeds, retrying while it fails with `isUnreachable`, for at most `timeoutMs`. */
export async function waitForDependency<T>(what: string, fn: () => Promise<T>, o: DependencyWaitOptions): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  let delay = o.initialDelayMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isUnreachable(err) || Date.now() + delay > deadline) throw err;
      o.onRetry?.(what, err, attempt);
      await sleep(delay);
      delay = Math.min(delay * 2, o.maxDelayMs ?? 5_000);
    }
  }
}
