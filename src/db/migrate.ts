/**
 * Versioned migrations (plain numbered SQL files in migrations/), applied at start with
 * node-pg-migrate. It takes an advisory lock, so several processes starting at once are safe.
 */
import path from 'node:path';
import { runner } from 'node-pg-migrate';
import { projectRoot } from '../config.ts';

export async function migrate(databaseUrl: string): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
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
