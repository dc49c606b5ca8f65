/**
 * What the harnesses of real OpenStack services (test/support/cinder.ts, test/support/nova.ts) share:
 * the machine's MariaDB (databases created from cached schema dumps), RabbitMQ vhosts of their own,
 * daemons started in a process group of their own with a log file each, and stopped again.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

export const run = promisify(execFile);

export const PYTHON = '/usr/bin/python3';
/** Python modules of the harnesses (Cinder's loop driver, Nova's pause hook): test/support/python. */
export const PYTHON_DIR = fileURLToPath(new URL('./python', import.meta.url));

// ---- MariaDB ----

export interface MysqlTarget {
  user: string;
  password: string;
  host: string;
  port: number;
}

/**
 * TETHER_TEST_CINDER_MYSQL_URL, default mysql+pymysql://tether_test:tether_test@127.0.0.1:3306 (no database
 * part): the account scripts/test-deps/mariadb.sh creates (`npm test` runs it first).
 */
export function mysqlTarget(): MysqlTarget {
  const raw = process.env.TETHER_TEST_CINDER_MYSQL_URL ?? 'mysql+pymysql://tether_test:tether_test@127.0.0.1:3306';
  const u = new URL(raw.replace(/^mysql\+pymysql:/, 'mysql:'));
  return { user: decodeURIComponent(u.username || 'root'), password: decodeURIComponent(u.password), host: u.hostname || '127.0.0.1', port: Number(u.port || 3306) };
}

/** The SQLAlchemy URL of database `name` on the target. */
export function sqlalchemyUrl(db: MysqlTarget, name: string): string {
  const auth = db.password ? `${encodeURIComponent(db.user)}:${encodeURIComponent(db.password)}` : encodeURIComponent(db.user);
  return `mysql+pymysql://${auth}@${db.host}:${db.port}/${name}`;
}

export function mysqlArgs(db: MysqlTarget): string[] {
  return ['-h', db.host, '-P', String(db.port), '-u', db.user, ...(db.password ? [`-p${db.password}`] : [])];
}

export async function mysql(db: MysqlTarget, sql: string, database?: string): Promise<void> {
  await run('mysql', [...mysqlArgs(db), ...(database ? [database] : []), '-e', sql]);
}

/** One value (the first column of the first row), as text; null for no row or SQL NULL. */
export async function mysqlValue(db: MysqlTarget, sql: string, database?: string): Promise<string | null> {
  const { stdout } = await run('mysql', [...mysqlArgs(db), ...(database ? [database] : []), '--batch', '--raw', '--skip-column-names', '-e', sql], { maxBuffer: 16 * 1024 * 1024 });
  const line = stdout.split('\n')[0];
  return line === undefined || line === '' || line === 'NULL' ? null : line;
}

/** Where schema dumps are cached: $TETHER_CACHE_DIR or ~/.cache/tether, then `sub`. */
export function cacheDir(sub: string): string {
  return path.join(process.env.TETHER_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'tether'), sub);
}

/** A short hash of the migration file names in `dirs` (plus `extra`): what a schema dump depends on. */
export function migrationsKey(dirs: string[], extra = ''): string {
  const hash = createHash('sha256').update(extra);
  for (const dir of dirs) {
    const names = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.endsWith('.py')).sort() : [];
    hash.update(`${dir}\n${names.join('\n')}\n`);
  }
  return hash.digest('hex').slice(0, 16);
}

/** Loads an SQL dump into an existing database. */
export function loadDump(db: MysqlTarget, name: string, dump: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = spawn('mysql', [...mysqlArgs(db), name], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`loading ${dump} failed: ${err.trim()}`))));
    fs.createReadStream(dump).pipe(child.stdin);
  });
}

/** Writes `mysqldump` of a database to `dump` (atomically: a parallel reader never sees half a file). */
export async function saveDump(db: MysqlTarget, name: string, dump: string): Promise<void> {
  fs.mkdirSync(path.dirname(dump), { recursive: true });
  const tmp = `${dump}.${process.pid}.tmp`;
  const { stdout } = await run('mysqldump', [...mysqlArgs(db), '--skip-comments', '--skip-dump-date', name], { maxBuffer: 64 * 1024 * 1024 });
  fs.writeFileSync(tmp, stdout);
  fs.renameSync(tmp, dump);
}

// ---- RabbitMQ ----

export function rabbitUrl(): string {
  return (process.env.TETHER_TEST_CINDER_RABBIT_URL ?? 'rabbit://guest:guest@127.0.0.1:5672').replace(/\/+$/, '');
}

/** A vhost of its own (so parallel harnesses never share queues), with the broker user's permissions. */
export async function addVhost(vhost: string): Promise<void> {
  await run('rabbitmqctl', ['add_vhost', vhost]);
  const r = new URL(rabbitUrl().replace(/^rabbit:/, 'amqp:'));
  await run('rabbitmqctl', ['set_permissions', '-p', vhost, decodeURIComponent(r.username || 'guest'), '.*', '.*', '.*']);
}

export async function deleteVhost(vhost: string): Promise<void> {
  await run('rabbitmqctl', ['delete_vhost', vhost]);
}

// ---- files ----

export function ini(sections: Record<string, Record<string, string | number | boolean>>): string {
  return Object.entries(sections)
    .map(([name, kv]) => `[${name}]\n${Object.entries(kv).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`)
    .join('\n');
}

export function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---- processes ----

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** The daemons still running are killed (SIGKILL to their groups) when this process exits. */
export function trackChild(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of live) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/**
 * Spawns a daemon in a process group of its own (so stopChild reaches its workers too), stdout and
 * stderr appended to `outFile`.
 */
export function spawnDaemon(command: string, args: string[], o: { cwd: string; env: NodeJS.ProcessEnv; outFile: string }): ChildProcess {
  const out = fs.openSync(o.outFile, 'a');
  const child = spawn(command, args, { cwd: o.cwd, env: o.env, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  trackChild(child);
  return child;
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM to the process group, SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (!isRunning(child) || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, s);
    } catch {
      // gone
    }
  };
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  live.delete(child);
}

/** Resident memory of a process and its descendants, in MiB. */
export function rssMiB(pid: number | undefined): number {
  if (!pid) return 0;
  let kb = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      kb += m ? Number(m[1]) : 0;
    } catch {
      // gone
    }
  }
  return Math.round(kb / 1024);
}

/** Every descendant of `pid` (from /proc). */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(entry));
      parents.set(ppid, list);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of parents.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** Loop devices whose backing file lies under `dir` (the loop driver's volumes), e.g. to detach them at the end. */
export async function loopDevicesUnder(dir: string): Promise<string[]> {
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']).catch(() => ({ stdout: '' }));
  const prefix = `${path.resolve(dir)}/`;
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([name, file]) => name && file && file.startsWith(prefix))
    .map(([name]) => name!);
}
