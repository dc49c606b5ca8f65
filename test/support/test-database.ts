/** A fresh, migrated database on the suite's PostgreSQL (one per test file or stack). */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { migrate } from '../../src/db/migrate.ts';

/** Creates `<prefix>_<random>` and runs the migrations; returns its URL. */
export async function createTestDatabase(prefix: string, suffix = randomUUID().slice(0, 8)): Promise<string> {
  const adminUrl = inject('databaseAdminUrl');
  const dbName = `${prefix}_${suffix}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  await migrate(url.toString());
  return url.toString();
}
