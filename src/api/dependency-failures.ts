/**
 * A request that failed because one of tether's own dependencies did not answer or is out of room —
 * PostgreSQL unreachable or its disk full, the block storage (Cinder) unreachable, Temporal
 * unreachable or its store full — answered as a 503 that says which one and what to do, with a
 * Retry-After, instead of the generic 500 "Unexpected API Error". A database or block-storage
 * failure in the API comes before the operation is handed to Temporal (nothing was done); a Temporal
 * that did not answer may have accepted it, which the message says. The messages name the dependency
 * and a SQLSTATE at most: never an address, a path or the driver's own text (the API's hardening
 * rule, test/hardening.test.ts). Anything else stays unexpected.
 */

export interface DependencyFailure {
  /** The message of the 503. */
  message: string;
  retryAfterSeconds: number;
}

/** PostgreSQL's SQLSTATEs of a lost or refused connection, a server going away, or no room left. */
const PG_UNAVAILABLE = /^(08...|57P0[123]|53[0-9]00)$/;
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT']);
const PG_CONNECTION_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i;
const DISK_FULL = /No space left on device|database or disk is full|disk full|ENOSPC|SQLITE_FULL/i;
/** gRPC status codes of a Temporal that does not answer (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED). */
const GRPC_UNAVAILABLE = new Set([14, 4, 8]);

interface ErrorLike {
  name?: string;
  message?: string;
  code?: unknown;
  cause?: unknown;
}

/** The error and its causes, outermost first (a bounded walk). */
function chain(err: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  let e = err;
  while (e && typeof e === 'object' && out.length < 6) {
    out.push(e as ErrorLike);
    e = (e as ErrorLike).cause;
  }
  return out;
}

function isPgError(e: ErrorLike): boolean {
  // pg's DatabaseError carries severity and a five-character SQLSTATE
  return typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && 'severity' in e;
}

const RETRY = 'The request was not carried out: ask again once it is back.';

export function dependencyFailure(err: unknown): DependencyFailure | undefined {
  const links = chain(err);
  // Temporal's client wraps the gRPC error (whose numeric code says why) in a ServiceError
  const fromTemporal = links.some((e) => e.name === 'ServiceError');
  for (const e of links) {
    const message = e.message ?? '';
    const code = typeof e.code === 'string' ? e.code : undefined;
    if (isPgError(e) && PG_UNAVAILABLE.test(e.code as string)) {
      if ((e.code as string) === '53100' || DISK_FULL.test(message)) {
        return { message: `tether's database (PostgreSQL) has no disk space left (SQLSTATE 53100): free space on the disk of its data folder. ${RETRY}`, retryAfterSeconds: 30 };
      }
      return { message: `tether's database (PostgreSQL) is not available (SQLSTATE ${e.code as string}). ${RETRY}`, retryAfterSeconds: 5 };
    }
    if (e.name === 'CinderUnavailable') {
      return { message: `The block storage (Cinder) did not answer the tether API. ${RETRY}`, retryAfterSeconds: 5 };
    }
    if (fromTemporal && typeof e.code === 'number' && GRPC_UNAVAILABLE.has(e.code)) {
      const maybe = 'It may or may not have been accepted: look at the server\'s volume attachments, or ask again once Temporal answers.';
      if (DISK_FULL.test(message)) return { message: `Temporal has no disk space left for its store: free space on the disk of its data folder. ${maybe}`, retryAfterSeconds: 30 };
      return { message: `Temporal did not answer the tether API. ${maybe}`, retryAfterSeconds: 5 };
    }
    if (DISK_FULL.test(message) || code === 'ENOSPC') {
      return { message: `A disk tether writes to is full: free space on it (TETHER_DATA_DIR, the volumes' folder). ${RETRY}`, retryAfterSeconds: 30 };
    }
    if ((code !== undefined && NETWORK_CODES.has(code)) || PG_CONNECTION_MESSAGES.test(message)) {
      // which one is not known here: a dropped connection looks the same from any of them
      return { message: `A service tether depends on (its database, Temporal or the block storage) did not answer the tether API. ${RETRY}`, retryAfterSeconds: 5 };
    }
  }
  return undefined;
}
