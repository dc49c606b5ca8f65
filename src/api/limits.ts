/**
 * Limits of the HTTP API (README, "Configuration"):
 *   TETHER_API_BODY_LIMIT             request bodies up to this many bytes (default 114688 = Nova's 112 KiB); more: 413
 *   TETHER_API_REQUEST_TIMEOUT_MS     a client must send its whole request within this time (default 30000)
 *   TETHER_API_CONNECTION_TIMEOUT_MS  an idle connection is closed after this time (default 120000; longer than any
 *                                     answer: a POST attach answers within TETHER_ATTACH_ANSWER_WAIT_MS, 30 s)
 *   TETHER_RATE_LIMIT                 `N/<window>` requests per token (per client IP without one), e.g. `100/10s`,
 *                                     `600/1m`; `off` disables (default 1000/10s); more: 429 with Retry-After
 */
export interface ApiLimits {
  bodyLimit: number;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
  rateLimit: { max: number; windowMs: number } | null;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `100/10s` → 100 requests per 10 000 ms; `off` → null. */
export function parseRateLimit(raw: string): ApiLimits['rateLimit'] {
  if (raw.trim().toLowerCase() === 'off') return null;
  const m = /^\s*(\d+)\s*\/\s*(\d*)\s*(ms|s|m|h)\s*$/.exec(raw);
  const max = Number(m?.[1]);
  const windowMs = Number(m?.[2] || 1) * (UNITS[m?.[3] ?? ''] ?? NaN);
  if (!m || !Number.isSafeInteger(max) || max < 1 || !Number.isSafeInteger(windowMs) || windowMs < 1) {
    throw new Error(`TETHER_RATE_LIMIT must be N/<window> (e.g. 100/10s, 600/1m) or off, got ${JSON.stringify(raw)}`);
  }
  return { max, windowMs };
}

function positive(source: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = source[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

export const NOVA_MAX_BODY_BYTES = 114_688;

export function loadApiLimits(source: NodeJS.ProcessEnv = process.env): ApiLimits {
  return {
    bodyLimit: positive(source, 'TETHER_API_BODY_LIMIT', NOVA_MAX_BODY_BYTES),
    requestTimeoutMs: positive(source, 'TETHER_API_REQUEST_TIMEOUT_MS', 30_000),
    connectionTimeoutMs: positive(source, 'TETHER_API_CONNECTION_TIMEOUT_MS', 120_000),
    rateLimit: parseRateLimit(source.TETHER_RATE_LIMIT || '1000/10s'),
  };
}
