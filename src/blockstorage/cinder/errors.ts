/**
 * Cinder's answers as tether errors. Business refusals become TetherErrors (non-retryable in the
 * activities); everything that may pass — connection refused, timeouts, 5xx, 429, auth trouble —
 * stays a plain Error subclass, which the activities retry with backoff.
 *
 *   404 volume                       → VolumeNotFound
 *   400/409 invalid volume, status   → VolumeNotAvailable      (Cinder's message kept)
 *   400/409 "already attached"       → VolumeAlreadyAttached
 *   413 over quota                   → OverQuota once src/errors.ts has it, VolumeNotAvailable until then
 *   other 400                        → InvalidInput
 *   5xx, 408, 429, network, timeout  → CinderUnavailableError  (retryable)
 *   401, 403                         → CinderAuthError         (retryable: fixing the credentials lets it proceed)
 */
import { TetherError, isTetherErrorType, type TetherErrorType } from '../../errors.ts';

/** Cinder could not be reached or answered with a transient failure: retry. */
export class CinderUnavailableError extends Error {
  override readonly name = 'CinderUnavailable';
}

/** Cinder refused tether's credentials or policy (401/403): retryable, the operator has to fix the configuration. */
export class CinderAuthError extends Error {
  override readonly name = 'CinderAuthFailed';
}

/** Cinder is too old (or too new) for tether: it needs the attachments API with os-complete (3.44). */
export class CinderVersionError extends Error {
  override readonly name = 'CinderVersionUnsupported';
}

/** A non-2xx answer, before it is given a meaning. Carries Cinder's error message only, never a body. */
export class CinderHttpError extends Error {
  override readonly name = 'CinderHttpError';
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    readonly cinderMessage: string,
    readonly requestId: string | null,
  ) {
    super(`Cinder answered ${status} to ${method} ${path}${requestId ? ` (${requestId})` : ''}: ${cinderMessage}`);
  }
}

/** The error type for "over quota": `OverQuota` as soon as src/errors.ts defines it. */
export const OVER_QUOTA_TYPE: TetherErrorType = isTetherErrorType('OverQuota') ? ('OverQuota' as string as TetherErrorType) : 'VolumeNotAvailable';

/**
 * The `message` of Cinder's error document (`{"badRequest": {"code": 400, "message": "…"}}`), or a
 * short generic text for HTML or empty bodies. Only error bodies are read here.
 */
export function cinderErrorMessage(status: number, text: string): string {
  try {
    const doc = JSON.parse(text) as Record<string, unknown>;
    for (const value of Object.values(doc)) {
      if (value && typeof value === 'object' && typeof (value as { message?: unknown }).message === 'string') {
        return truncate((value as { message: string }).message);
      }
    }
    if (typeof doc.message === 'string') return truncate(doc.message);
  } catch {
    // not JSON (webob's HTML pages)
  }
  const title = /<title>([^<]*)<\/title>/i.exec(text)?.[1]?.trim();
  return title ? truncate(title) : `HTTP ${status}`;
}

function truncate(s: string): string {
  return s.length > 500 ? `${s.slice(0, 500)}…` : s;
}

/** A readable reason from a fetch failure: ECONNREFUSED, a timeout, a DNS error, … */
export function describeFetchFailure(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const cause = e?.cause;
  if (cause?.code || cause?.message) return [cause.code, cause.message].filter(Boolean).join(': ');
  return e?.message ?? String(err);
}

export type Subject = { volumeId: string } | { attachmentId: string } | { none: true };

/**
 * The meaning of a failed Cinder call. `subject` says what a 404 is about: a volume (VolumeNotFound)
 * or an attachment (VolumeNotAvailable "attachment could not be found", as the local service says).
 */
export function mapCinderError(err: unknown, subject: Subject): Error {
  if (!(err instanceof CinderHttpError)) return err instanceof Error ? err : new Error(String(err));
  const { status, cinderMessage: msg } = err;
  if (status >= 500 || status === 408 || status === 429) return new CinderUnavailableError(err.message);
  if (status === 401 || status === 403) return new CinderAuthError(err.message);
  if (status === 406) return new CinderVersionError(err.message);
  if (status === 404) {
    if ('volumeId' in subject) return new TetherError('VolumeNotFound', `Volume ${subject.volumeId} could not be found.`);
    if ('attachmentId' in subject) return new TetherError('VolumeNotAvailable', `Volume attachment ${subject.attachmentId} could not be found.`);
    return new TetherError('InvalidInput', `Cinder: ${msg}`);
  }
  if (status === 413) return new TetherError(OVER_QUOTA_TYPE, `Quota exceeded: ${msg}`);
  if (/already attached/i.test(msg)) return new TetherError('VolumeAlreadyAttached', msg);
  if (status === 409 || /invalid volume|status must be|not available|must be available|is not in a valid state/i.test(msg)) {
    return new TetherError('VolumeNotAvailable', msg.startsWith('Invalid volume') ? msg : `Invalid volume: ${msg}`);
  }
  return new TetherError('InvalidInput', `Cinder refused the request: ${msg}`);
}
