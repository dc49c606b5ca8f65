/**
 * The API's answer when a dependency fails (src/api/dependency-failures.ts): PostgreSQL unreachable
 * or full, Cinder unreachable, Temporal not answering, a full disk — each a 503 naming it; anything
 * else stays the generic 500 (undefined here).
 */
import { describe, expect, it } from 'vitest';
import { dependencyFailure } from '../../src/api/dependency-failures.ts';

function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR' });
}

describe('dependencyFailure', () => {
  it('names PostgreSQL, its full disk, Cinder, Temporal and a full disk', () => {
    expect(dependencyFailure(pgError('53100', 'could not extend file "base/1/2": No space left on device'))?.message).toMatch(/^tether's database \(PostgreSQL\) has no disk space left .*free space/);
    expect(dependencyFailure(pgError('57P01', 'terminating connection due to administrator command'))?.message).toMatch(/PostgreSQL\) is not available \(SQLSTATE 57P01/);
    expect(dependencyFailure(new Error('Connection terminated unexpectedly'))?.message).toMatch(/did not answer the tether API\./);
    const refused = dependencyFailure(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
    expect(refused?.retryAfterSeconds).toBe(5);
    // the driver's text (addresses, paths) never reaches the client
    expect(refused?.message).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|5432/);
    expect(dependencyFailure(pgError('53100', 'could not extend file "base/1/2": No space left on device'))?.message).not.toContain('base/1/2');
    const cinder = Object.assign(new Error('GET /volumes/x: fetch failed'), { name: 'CinderUnavailable' });
    expect(dependencyFailure(cinder)?.message).toMatch(/^The block storage \(Cinder\) did not answer/);
    const temporal = Object.assign(new Error('14 UNAVAILABLE: database or disk is full'), { name: 'ServiceError', code: 14 });
    expect(dependencyFailure(temporal)?.message).toMatch(/^Temporal has no disk space left.*may or may not have been accepted/);
    // as the client throws it: the gRPC status on the cause
    const started = Object.assign(new Error('Failed to start Workflow'), { name: 'ServiceError', cause: Object.assign(new Error('14 UNAVAILABLE: shard status unknown'), { code: 14, details: 'shard status unknown' }) });
    expect(dependencyFailure(started)?.message).toMatch(/^Temporal did not answer the tether API\. It may or may not have been accepted/);
    const wrapped = new Error('the attach failed', { cause: Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }) });
    expect(dependencyFailure(wrapped)?.message).toMatch(/^A disk tether writes to is full/);
  });

  it('leaves everything else to the generic 500', () => {
    expect(dependencyFailure(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBeUndefined();
    expect(dependencyFailure(pgError('23505', 'duplicate key value violates unique constraint'))).toBeUndefined();
    expect(dependencyFailure(Object.assign(new Error('3 INVALID_ARGUMENT: bad'), { name: 'ServiceError', code: 3 }))).toBeUndefined();
  });
});
