/** The PostgreSQL pool and the one transaction helper everything uses. */
import pg from 'pg';

export type Queryable = Pick<pg.PoolClient, 'query'>;
export type Database = pg.Pool;

export function createDatabase(url: string, options: { max?: number; applicationName?: string } = {}): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'tether',
    connectionTimeoutMillis: 10_000,
  });
  // An idle client that loses its server (PostgreSQL restarted) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

export async function withTransaction<T>(db: Database, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.connect();
  // The pool takes its own 'error' listener off a client it hands out: a server that goes away while the
  // client is checked out (a restart mid-transaction, or a dead idle connection handed out just before
  // its end was noticed) would be an unhandled 'error' event that kills the process. The query in flight
  // fails with the same error, which is what the caller sees; the broken client is destroyed on release.
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    if (!broken) await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

/** PostgreSQL's unique_violation. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === '23505' && (constraint === undefined || e.constraint === constraint);
}
