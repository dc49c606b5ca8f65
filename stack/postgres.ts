/**
 * The stack's PostgreSQL: an embedded server of its own (stack/embedded-postgres.ts) or a given one
 * (a URL), and, by option, a fresh database of its own on it (created now, dropped at stop).
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.ts';
import { findFreePort } from './free-port.ts';

export type PostgresChoice =
  /** An embedded server: its data in `dataDir` (default: a temporary folder, removed at stop), on `port` (default: a free one). */
  | { embedded: { dataDir?: string; port?: number } }
  /** A server that runs already: never stopped or killed by the stack. */
  | { url: string };

export interface StackPostgresOptions {
  /** A database of this name, created now on the server (on a given server: dropped at stop unless `keepDatabase`). Default: the URL's, or `tether` on an embedded server. */
  database?: string;
  keepDatabase?: boolean;
}

export interface StackPostgres {
  kind: 'embedded' | 'url';
  /** The database tether uses. */
  url: string;
  /** The same server's `postgres` database (CREATE DATABASE, Temporal's own databases). */
  adminUrl: string;
  /** The port it listens on (what a TCP proxy in front of it forwards to). */
  port: number;
  /** The embedded server's data folder (PGDATA). */
  dataDir?: string;
  /** The embedded server's postmaster, from its postmaster.pid. */
  postmasterPid(): Promise<number | undefined>;
  /** Drops these databases (IF EXISTS, WITH FORCE). */
  dropDatabases(names: string[]): Promise<void>;
  /** Starts the embedded server again (after a kill); retried while the killed server's backends exit. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const password = 'tether';

export async function startStackPostgres(choice: PostgresChoice, o: StackPostgresOptions = {}): Promise<StackPostgres> {
  return 'url' in choice ? givenPostgres(choice.url, o) : embeddedPostgres(choice.embedded, o);
}

async function givenPostgres(given: string, o: StackPostgresOptions): Promise<StackPostgres> {
  const admin = new URL(given);
  admin.pathname = '/postgres';
  const url = new URL(given);
  if (o.database) {
    await adminQuery(admin.toString(), `CREATE DATABASE ${o.database}`);
    url.pathname = `/${o.database}`;
  }
  return {
    kind: 'url',
    url: url.toString(),
    adminUrl: admin.toString(),
    port: Number(url.port || 5432),
    postmasterPid: async () => undefined,
    dropDatabases: (names) => dropDatabases(admin.toString(), names),
    restart: () => Promise.reject(new Error('PostgreSQL comes from a URL: not the stack\'s to restart')),
    async stop() {
      if (o.database && !o.keepDatabase) await dropDatabases(admin.toString(), [o.database]);
    },
  };
}

async function embeddedPostgres(e: { dataDir?: string; port?: number }, o: StackPostgresOptions): Promise<StackPostgres> {
  let tempDir: string | undefined;
  if (!e.dataDir) {
    tempDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tether-pg-'));
    await fsp.chmod(tempDir, 0o755); // PostgreSQL runs as `postgres` when we are root
  }
  const dataDir = e.dataDir ?? path.join(tempDir!, 'data');
  const port = e.port ?? (await findFreePort());
  const database = o.database ?? 'tether';
  let server: EmbeddedPostgres | undefined;
  const start = async () => {
    // embedded-postgres hooks SIGINT/SIGTERM/SIGHUP to stop itself and exit the process; the stack has
    // one shutdown of its own, so the listeners it adds are removed again (those added before stay).
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
    // A killed postmaster leaves backends that exit on their own within moments; a start before that fails.
    for (let attempt = 1; ; attempt++) {
      try {
        server = await startEmbeddedPostgres({ dataDir, port, database, password });
        break;
      } catch (err) {
        if (attempt >= 5) throw err;
        await sleep(1000 * attempt);
      }
    }
    for (const signal of signals) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
    return server;
  };
  try {
    await start();
  } catch (err) {
    if (tempDir) await fsp.rm(tempDir, { recursive: true, force: true });
    throw err;
  }
  const admin = new URL(server!.url);
  admin.pathname = '/postgres';
  return {
    kind: 'embedded',
    url: server!.url,
    adminUrl: admin.toString(),
    port,
    dataDir,
    async postmasterPid() {
      const pid = Number.parseInt((await fsp.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0] ?? '', 10);
      return pid > 0 ? pid : undefined;
    },
    dropDatabases: (names) => dropDatabases(admin.toString(), names),
    async restart() {
      await start();
    },
    async stop() {
      await server?.stop();
      if (tempDir) await fsp.rm(tempDir, { recursive: true, force: true });
    },
  };
}

async function adminQuery(adminUrl: string, sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

async function dropDatabases(adminUrl: string, names: string[]): Promise<void> {
  for (const name of names) await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
