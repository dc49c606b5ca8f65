/**
 * Structured logs (pino) with storage secrets redacted wherever they may appear: connection_info
 * data, connectors' CHAP fields, auth headers, Temporal API key, payload-codec keys and token.
 *
 * Two layers: pino's `redact` paths (fast, applied after serializers, so they also cover a
 * serialized error's properties and request headers), and a scrub of every logged object and child
 * binding that censors secret-named keys and connection_info data at any depth (redact paths only
 * reach the depths they spell out).
 */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export const CENSOR = '[redacted]';

/** Keys whose value is a secret wherever they appear (compared in lower case). */
export const SECRET_KEYS = new Set([
  'auth_password',
  'auth_username',
  'discovery_auth_password',
  'discovery_auth_username',
  'password',
  'secret',
  'keyring',
  'token',
  'apikey',
  'api_key',
  'temporalapikey',
  'codeckeys',
  'codectoken',
  'authorization',
  'x-auth-token',
  'x-subject-token',
  'x-service-token',
  'password_hash',
  'passwordhash',
  'cookie',
]);

/** Keys that hold a Cinder connection_info: its `data` (addresses, credentials, keys) is censored whole. */
const CONNECTION_INFO_KEYS = new Set(['connection_info', 'connectioninfo']);

export const REDACTED_PATHS = [
  '*.auth_password',
  '*.auth_username',
  '*.discovery_auth_password',
  '*.discovery_auth_username',
  '*.secret',
  '*.keyring',
  '*.password',
  '*.data.auth_password',
  '*.data.secret',
  '*.data.keyring',
  '*.data.key',
  '*.connection_info.data',
  '*.connectionInfo.data',
  'connection_info.data',
  'connectionInfo.data',
  'temporalApiKey',
  '*.temporalApiKey',
  'codecKeys',
  '*.codecKeys',
  'codecToken',
  '*.codecToken',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-auth-token"]',
  'req.headers["x-subject-token"]',
  'req.headers["x-service-token"]',
  'res.headers["x-subject-token"]',
  '*.passwordHash',
];

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * A copy of `value` with secrets censored (the original is never changed; unchanged parts are
 * shared). Descends into plain objects and arrays only: errors, requests and the like go through
 * their serializers and the redact paths.
 */
export function scrubSecrets(value: unknown, depth = 0): unknown {
  if (depth > 12) return value;
  if (Array.isArray(value)) {
    let changed = false;
    const out = value.map((v) => {
      const s = scrubSecrets(v, depth + 1);
      if (s !== v) changed = true;
      return s;
    });
    return changed ? out : value;
  }
  if (!isPlainObject(value)) return value;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const lower = k.toLowerCase();
    let s: unknown;
    if (SECRET_KEYS.has(lower)) s = v === undefined || v === null ? v : CENSOR;
    else if (CONNECTION_INFO_KEYS.has(lower)) s = isPlainObject(v) ? scrubSecrets({ ...v, ...('data' in v ? { data: CENSOR } : {}) }, depth + 1) : typeof v === 'string' ? CENSOR : scrubSecrets(v, depth + 1);
    else s = scrubSecrets(v, depth + 1);
    if (s !== v) {
      out ??= { ...value };
      out[k] = s;
    }
  }
  return out ?? value;
}

/** `destination`: where the JSON lines go (stdout when absent). */
export function createLogger(name: string, level = process.env.TETHER_LOG_LEVEL ?? 'info', destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    name,
    level,
    redact: { paths: REDACTED_PATHS, censor: CENSOR },
    formatters: {
      log: (object) => scrubSecrets(object) as Record<string, unknown>,
      bindings: (bindings) => scrubSecrets(bindings) as Record<string, unknown>,
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
