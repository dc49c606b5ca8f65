/**
 * Versioned migrations (plain numbered SQL files in migrations/), applied at start with
 * node-pg-migrate. It takes an advisory lock, so several processes starting at once are safe.
 */
import path from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { projectRoot } from '../config.ts';

export async function migrate(databaseUrl: string): Promise<string[]> {
  // Our own connection, with an 'error' listener: node-pg-migrate's own client has none, so a
  // PostgreSQL that died between two of its queries crashed the process with an unhandled 'error'
  // event (found by the chaos storm). The loss is rethrown instead, so a caller can wait and retry.
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'tether-migrate' });
  let lost: Error | undefined;
  client.on('error', (err) => {
    lost ??= err;
  });
  await client.connect();
  try {
    return await runMigrations(client);
  } catch (err) {
    if (lost) throw new Error(`the connection to PostgreSQL was lost during the migrations: ${lost.message}`, { cause: lost });
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function runMigrations(client: pg.Client): Promise<string[]> {
  const applied = await runner({
    dbClient: client,
    dir: path.join(projectRoot, 'migrations'),
    migrationsTable: 'tether_migrations',
    direction: 'up',
    count: Infinity,
    singleTransaction: true,
    // Processes that start together (npm start, compose) queue on the lock; 'fail' (the default) made all but one exit.
    advisoryLockMode: 'wait',
    log: () => undefined,
  });
  return applied.map((m) => m.name);
}
