/**
 * Runs the Temporal development server (`temporal server start-dev` from the Temporal CLI
 * built by scripts/build-temporal.sh) as a child process, and registers tether's search
 * attributes on external servers.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { parse as parseYaml } from 'yaml';
import { projectRoot } from '../src/config.ts';
import { readTail, reapOrphan } from './pid.ts';
import { waitForFrontend } from './temporal-frontend.ts';

/** deploy/temporal/dynamicconfig/tether.yaml */
export const DYNAMIC_CONFIG_FILE = path.join(projectRoot, 'deploy', 'temporal', 'dynamicconfig', 'tether.yaml');

/** Search attributes every tether namespace carries (all Keyword). */
export const SEARCH_ATTRIBUTES = {
  InstanceUuid: 'Keyword',
  VolumeId: 'Keyword',
  ComputeHost: 'Keyword',
  TetherState: 'Keyword',
} as const;

export interface TemporalDevServer {
  /** host:port of the gRPC frontend. */
  address: string;
  /** Web UI, unless started headless. */
  uiUrl?: string;
  pid: number;
  /** False once the process has exited. */
  readonly running: boolean;
  /** SIGTERM, wait for exit (SIGKILL after 10 s). Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal without waiting (tests use SIGKILL to simulate a crash). */
  kill(signal?: NodeJS.Signals): void;
}

export interface StartTemporalDevServerOptions {
  binary: string;
  /** Codec server the Temporal UI asks to decode payloads (--ui-codec-endpoint). */
  uiCodecEndpoint?: string;
  port: number;
  /** Web UI port; omit to run headless. */
  uiPort?: number;
  /** Persistent SQLite file (--db-filename); omit for an in-memory server. */
  dbFile?: string;
  /** Namespace to create at launch (besides "default", which always exists). */
  namespace?: string;
  /** File that receives the server's stdout and stderr (appended); omit to discard them. */
  logFile?: string;
  /** Address the frontend binds to; default 127.0.0.1. */
  ip?: string;
  /** How long to wait for the frontend to answer; default 60 s. */
  readyTimeoutMs?: number;
}

/**
 * The dynamic config of every Temporal tether runs: deploy/temporal/dynamicconfig/tether.yaml, which
 * the cluster's nodes and the compose file read as a file, handed to the dev server as
 * `--dynamic-config-value` flags (it takes no file). It takes a workflow step from ~100 ms down to
 * ~20 ms (the transfer queue reader polls only 20 times a second by default; eager activities skip
 * matching; one partition per task queue suits queues with a single poller).
 */
export function dynamicConfigFlags(file = DYNAMIC_CONFIG_FILE): string[] {
  const settings = parseYaml(fs.readFileSync(file, 'utf8')) as Record<string, Array<{ value: unknown; constraints?: unknown }>>;
  const flags: string[] = [];
  for (const [key, entries] of Object.entries(settings ?? {})) {
    const unconstrained = entries.find((e) => e.constraints === undefined);
    if (unconstrained) flags.push('--dynamic-config-value', `${key}=${JSON.stringify(unconstrained.value)}`);
  }
  return flags;
}

/**
 * SQLite pragmas for the persistent store. WAL with synchronous=normal loses no committed
 * transaction when a process is killed (SIGKILL, crash of the server or of tether): the WAL
 * is in the OS page cache and is replayed on the next open. Only an OS crash or power loss
 * can lose the last transactions before a checkpoint. With the default pragmas (rollback
 * journal, synchronous=full) every workflow step waits for an fsync and costs ~2x latency.
 * Production runs a real Temporal cluster on PostgreSQL instead.
 */
const SQLITE_PRAGMAS: Record<string, string> = {
  journal_mode: 'wal',
  synchronous: 'normal',
};

const TAIL_BYTES = 16 * 1024;

export async function startTemporalDevServer(o: StartTemporalDevServerOptions): Promise<TemporalDevServer> {
  const ip = o.ip ?? '127.0.0.1';
  const address = `${hostForUrl(ip)}:${o.port}`;
  const readyTimeoutMs = o.readyTimeoutMs ?? 60_000;

  try {
    await fsp.access(o.binary, fs.constants.X_OK);
  } catch {
    throw new Error(
      `Temporal CLI not found (or not executable) at ${o.binary}: run scripts/build-temporal.sh ` +
        `(or set TETHER_TEMPORAL_BIN to an existing temporal binary, v1.5.1)`,
    );
  }

  const args = ['server', 'start-dev', '--ip', ip, '--port', String(o.port)];
  if (o.uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(o.uiPort));
  if (o.namespace !== undefined && o.namespace !== 'default') args.push('--namespace', o.namespace);
  if (o.uiCodecEndpoint) args.push('--ui-codec-endpoint', o.uiCodecEndpoint);
  for (const [key, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${key}=${type}`);
  args.push(...dynamicConfigFlags());
  let pidFile: string | undefined;
  if (o.dbFile !== undefined) {
    const dbFile = path.resolve(o.dbFile);
    await fsp.mkdir(path.dirname(dbFile), { recursive: true });
    args.push('--db-filename', dbFile);
    for (const [key, value] of Object.entries(SQLITE_PRAGMAS)) args.push('--sqlite-pragma', `${key}=${value}`);
    pidFile = `${dbFile}.pid`;
    await reapOrphanedServer(pidFile, dbFile);
  }

  // Output: appended to logFile, or kept only as a short in-memory tail for error messages.
  let logFd: number | undefined;
  if (o.logFile !== undefined) {
    await fsp.mkdir(path.dirname(path.resolve(o.logFile)), { recursive: true });
    logFd = fs.openSync(o.logFile, 'a');
    fs.writeSync(logFd, `\n=== ${new Date().toISOString()} ${o.binary} ${args.join(' ')}\n`);
  }
  let memoryTail = '';
  const child = spawn(o.binary, args, {
    stdio: ['ignore', logFd ?? 'pipe', logFd ?? 'pipe'],
    env: { ...process.env, TEMPORAL_CLI_SHOW_HINTS: 'false' },
  });
  if (logFd !== undefined) fs.closeSync(logFd);
  const keepTail = (chunk: Buffer) => {
    memoryTail = (memoryTail + chunk.toString('utf8')).slice(-TAIL_BYTES);
  };
  child.stdout?.on('data', keepTail);
  child.stderr?.on('data', keepTail);

  let exited = false;
  let exitDescription = '';
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      exitDescription = signal !== null ? `signal ${signal}` : `code ${code}`;
      resolve();
    });
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const tail = async () => (o.logFile !== undefined ? await readTail(o.logFile, 4096) : memoryTail.trim());

  // Wait for the pid (or a spawn error).
  const pid = child.pid;
  if (pid === undefined) {
    const err = await spawnError;
    throw new Error(`could not start ${o.binary}: ${err.message}`);
  }
  if (pidFile !== undefined) await fsp.writeFile(pidFile, `${pid} ${process.pid}\n`);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const escalate = setTimeout(() => child.kill('SIGKILL'), 10_000);
        try {
          await exitPromise;
        } finally {
          clearTimeout(escalate);
        }
      }
      if (pidFile !== undefined) await fsp.rm(pidFile, { force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + readyTimeoutMs;
  try {
    await waitForFrontend({ name: 'Temporal dev server', address, deadline, exited: () => exited });
  } catch (err) {
    const early = exited;
    await stop();
    const why = early
      ? `Temporal dev server exited during startup (${exitDescription})`
      : `Temporal dev server did not answer on ${address} within ${readyTimeoutMs} ms (${(err as Error).message})`;
    const logTail = await tail();
    throw new Error(`${why}${o.logFile !== undefined ? `; log: ${o.logFile}` : ''}${logTail ? `\n--- last output ---\n${logTail}` : ''}`);
  }

  const server: TemporalDevServer = {
    address,
    pid,
    get running() {
      return !exited;
    },
    stop,
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (!exited) child.kill(signal);
    },
  };
  if (o.uiPort !== undefined) server.uiUrl = `http://${hostForUrl(ip)}:${o.uiPort}`;
  return server;
}

/** Numeric values of temporal.api.enums.v1.IndexedValueType. */
const INDEXED_VALUE_TYPE = {
  Text: 1,
  Keyword: 2,
  Int: 3,
  Double: 4,
  Bool: 5,
  Datetime: 6,
  KeywordList: 7,
} as const;

/**
 * For an external Temporal server: adds those of SEARCH_ATTRIBUTES the namespace lacks.
 * Idempotent; fails clearly when a name exists with another type.
 * (The dev server started by startTemporalDevServer already has them.)
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<void> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const custom = existing.customAttributes ?? {};
  const system = existing.systemAttributes ?? {};
  const missing: Record<string, number> = {};
  for (const [name, typeName] of Object.entries(SEARCH_ATTRIBUTES)) {
    const wanted = INDEXED_VALUE_TYPE[typeName];
    const have = custom[name] ?? system[name];
    if (have === undefined || have === null) missing[name] = wanted;
    else if (Number(have) !== wanted) {
      throw new Error(`search attribute ${name} exists in namespace ${namespace} with type ${String(have)}, tether needs ${typeName}`);
    }
  }
  if (Object.keys(missing).length === 0) return;
  try {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  } catch (err) {
    // Another process may have added them concurrently: ALREADY_EXISTS (gRPC code 6) is fine.
    if ((err as { code?: number }).code !== 6) throw err;
  }
}

function hostForUrl(ip: string): string {
  return ip.includes(':') ? `[${ip}]` : ip;
}

/**
 * A dev server left running by a process that was killed (SIGKILL does not take children
 * along) still holds the db file and the port. The pid file next to the db file records
 * "serverPid ownerPid": when the owner is gone and the server still runs on this db file,
 * stop it; when the owner is alive, refuse (two servers must never share one SQLite file).
 */
function reapOrphanedServer(pidFile: string, dbFile: string): Promise<void> {
  return reapOrphan(pidFile, {
    what: 'a Temporal dev server',
    on: dbFile,
    graceMs: 10_000,
    isOurs: async (pid) => {
      const cmdline = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
      return cmdline.includes('start-dev') && cmdline.includes(dbFile);
    },
  });
}
