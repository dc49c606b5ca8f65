/**
 * `npm start`: the whole embedded stack in the foreground.
 *   libvirtd (started if none runs) → PostgreSQL (DATABASE_URL, or embedded) → Temporal (TEMPORAL_ADDRESS,
 *   or the dev server with a persistent SQLite file) → migrations → control-plane worker, compute agent
 *   and API server as child processes (restarted if they die) → waits for GET /healthz → prints the URLs.
 * `TETHER_TEMPORAL=cluster npm start`: the production topology instead — a Temporal cluster of two
 *   nodes on that PostgreSQL with mTLS (stack/temporal-cluster.ts; every tether process presents the
 *   cluster's client certificate and fails over between the frontends), and TETHER_COMPUTE_HOSTS
 *   (default 2) compute hosts that share nothing: compute-1 on the system libvirt daemon, the others
 *   each on a libvirt daemon of its own (stack/libvirtd-isolated.ts), each with its own compute agent.
 * Both write <data>/stack.json (every process started: name, pid, address, host, libvirtUri) and
 * print the same. Ctrl-C stops everything it started, in reverse order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { temporalConnectionOptions } from '../src/temporal/client.ts';
import { loadConfig, projectRoot } from '../src/config.ts';
import { loadCodecServerSettings } from '../src/security/codec-config.ts';
import { migrate } from '../src/db/migrate.ts';
import { ensureLibvirtd } from '../stack/libvirtd.ts';
import { startEmbeddedPostgres } from '../stack/embedded-postgres.ts';
import { ensureSearchAttributes, startTemporalDevServer } from '../stack/temporal-dev-server.ts';
import { clusterClientEnv, startTemporalCluster } from '../stack/temporal-cluster.ts';
import { startIsolatedLibvirtd } from '../stack/libvirtd-isolated.ts';
import { blockStorageKind } from '../src/blockstorage/index.ts';

const config = loadConfig();
// A bad TETHER_CODEC_KEYS fails here, at start, rather than in every process.
const codec = loadCodecServerSettings();
const codecUrl = codec.keys ? `http://127.0.0.1:${codec.port}` : undefined;
const logDir = path.join(config.dataDir, 'logs');
const stops: Array<{ name: string; stop: () => Promise<void> }> = [];
const children = new Map<string, ChildProcess>();
let shuttingDown = false;

/** TETHER_TEMPORAL: `dev` (default: the dev server, or TEMPORAL_ADDRESS) or `cluster`. */
const temporalMode = (process.env.TETHER_TEMPORAL || 'dev').toLowerCase();
if (temporalMode !== 'dev' && temporalMode !== 'cluster') throw new Error(`TETHER_TEMPORAL must be dev or cluster, got ${temporalMode}`);
if (temporalMode === 'cluster' && config.temporalAddressFromEnv) {
  throw new Error('TETHER_TEMPORAL=cluster starts a Temporal cluster of its own: unset TEMPORAL_ADDRESS (or drop TETHER_TEMPORAL to use that server)');
}
const computeHostCount = temporalMode === 'cluster' ? Number(process.env.TETHER_COMPUTE_HOSTS || 2) : 1;
if (!Number.isInteger(computeHostCount) || computeHostCount < 1) throw new Error(`TETHER_COMPUTE_HOSTS must be a positive integer, got ${process.env.TETHER_COMPUTE_HOSTS}`);

/** One line of stack.json's `processes`: every process this stack started. */
interface StackProcess {
  name: string;
  pid: number;
  /** host:port it serves (a Temporal frontend, the API, PostgreSQL). */
  address?: string;
  /** The compute host a compute agent (or libvirt daemon) is. */
  host?: string;
  libvirtUri?: string;
}
const stackProcesses = new Map<string, StackProcess>();
const stackFile = path.join(config.dataDir, 'stack.json');
const clusterEnvFile = path.join(config.dataDir, 'cluster.env');
/** A path as the user typed it from here: relative when under the current folder. */
const shown = (file: string) => (path.relative(process.cwd(), file).startsWith('..') ? file : path.relative(process.cwd(), file));
let stackWrite = Promise.resolve();

/** Records (or updates: a restarted child has a new pid) a process in <data>/stack.json. */
function recordProcess(p: StackProcess): void {
  stackProcesses.set(p.name, p);
  const content = `${JSON.stringify({ temporal: temporalMode, startedAt: new Date().toISOString(), processes: [...stackProcesses.values()] }, null, 2)}\n`;
  stackWrite = stackWrite.then(async () => {
    await writeFile(`${stackFile}.tmp`, content);
    await rename(`${stackFile}.tmp`, stackFile);
  });
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const result = await fn();
  say(`  ✓ ${label} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return result;
}

/** Runs a tether process, logging to <data>/logs/<name>.log, restarting it if it dies. */
function supervise(name: string, script: string, env: NodeJS.ProcessEnv, describe: Omit<StackProcess, 'name' | 'pid'> = {}): void {
  const log = createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
  const start = () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'workers', script)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    children.set(name, child);
    if (child.pid !== undefined) recordProcess({ name, pid: child.pid, ...describe });
    child.on('exit', (code, signal) => {
      children.delete(name);
      if (shuttingDown) return;
      say(`  ! ${name} exited (${signal ?? code}); restarting in 1 s — see ${path.join(logDir, `${name}.log`)}`);
      setTimeout(start, 1000);
    });
  };
  start();
}

async function waitForHealth(url: string, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer 200 within ${deadlineMs / 1000} s (last: ${last}); see the logs in ${logDir}`);
}

async function shutdown(code: number): Promise<never> {
  if (shuttingDown) process.exit(code);
  shuttingDown = true;
  say('\nStopping tether…');
  await Promise.all(
    [...children.entries()].map(
      ([name, child]) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          child.once('exit', () => {
            clearTimeout(timer);
            say(`  ✓ ${name} stopped`);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  for (const { name, stop } of stops.reverse()) {
    await stop().then(
      () => say(`  ✓ ${name} stopped`),
      (err: unknown) => say(`  ! ${name}: ${(err as Error).message}`),
    );
  }
  process.exit(code);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  await mkdir(logDir, { recursive: true });
  say(`Starting tether (data in ${config.dataDir})`);

  const libvirtd = await timed(`libvirt at ${config.libvirtUri}`, () => ensureLibvirtd(config.libvirtUri));
  if (libvirtd.startedByUs) stops.push({ name: 'libvirtd', stop: libvirtd.stop });
  const computeHosts: Array<{ host: string; libvirtUri: string }> = [{ host: config.computeHost, libvirtUri: config.libvirtUri }];
  // The other hosts' libvirt daemons start meanwhile (a daemon's first start probes QEMU: it can take a while).
  const isolatedHosts = Array.from({ length: computeHostCount - 1 }, (_, k) => `${config.computeHost.replace(/-\d+$/, '')}-${k + 2}`);
  const daemonsReady = Promise.all(
    isolatedHosts.map((host) =>
      timed(`${host}: a libvirt daemon of its own`, () =>
        startIsolatedLibvirtd({ name: host, stateDir: path.join(config.dataDir, 'hypervisors', host), keepState: true }),
      ).then((daemon) => {
        stops.push({ name: `libvirtd of ${host}`, stop: daemon.stop });
        recordProcess({ name: `libvirtd-${host}`, pid: daemon.libvirtdPid, host, libvirtUri: daemon.uri });
        return { host, libvirtUri: daemon.uri };
      }),
    ),
  );
  daemonsReady.catch(() => undefined); // awaited below

  let databaseUrl = config.databaseUrl;
  if (!config.databaseUrlFromEnv) {
    const pg = await timed(`embedded PostgreSQL on port ${config.embeddedPgPort}`, () =>
      startEmbeddedPostgres({ dataDir: path.join(config.dataDir, 'postgres'), port: config.embeddedPgPort, database: 'tether', password: 'tether' }),
    );
    databaseUrl = pg.url;
    stops.push({ name: 'PostgreSQL', stop: pg.stop });
    const postmaster = Number.parseInt(await readFile(path.join(config.dataDir, 'postgres', 'postmaster.pid'), 'utf8').catch(() => ''), 10);
    if (postmaster > 0) recordProcess({ name: 'postgres', pid: postmaster, address: `127.0.0.1:${config.embeddedPgPort}` });
    // embedded-postgres installs signal handlers that exit the process; the shutdown above is ours.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal);
    process.on('SIGINT', () => void shutdown(0));
    process.on('SIGTERM', () => void shutdown(0));
  }

  let uiUrl: string | undefined;
  let temporalEnv: Record<string, string> = { TEMPORAL_ADDRESS: config.temporalAddress };
  if (temporalMode === 'cluster') {
    // Temporal's own databases on the same server: `temporal` and `temporal_visibility`.
    const temporalDb = new URL(databaseUrl);
    temporalDb.pathname = '/temporal';
    const cluster = await timed('Temporal cluster: 2 nodes on PostgreSQL, mTLS', () =>
      startTemporalCluster({ dataDir: path.join(config.dataDir, 'temporal-cluster'), databaseUrl: temporalDb.toString(), namespace: config.temporalNamespace }),
    );
    stops.push({ name: 'Temporal cluster', stop: cluster.stop });
    for (const p of cluster.processes) recordProcess(p);
    temporalEnv = clusterClientEnv(cluster);
    // What the CLI (and any other tether process) needs to reach this cluster: `set -a; . <data>/cluster.env; set +a`.
    await writeFile(clusterEnvFile, `${Object.entries(temporalEnv).map(([k, v]) => `${k}=${v}`).join('\n')}\n`);
  } else if (config.temporalAddressFromEnv) {
    await timed(`Temporal at ${config.temporalAddress}`, async () => {
      const connection = await Connection.connect(temporalConnectionOptions(config));
      await ensureSearchAttributes(connection, config.temporalNamespace);
      await connection.close();
    });
  } else {
    const temporal = await timed(`Temporal dev server on port ${config.temporalPort}`, () =>
      startTemporalDevServer({
        binary: config.temporalBinary,
        port: config.temporalPort,
        uiPort: config.temporalUiPort,
        dbFile: path.join(config.dataDir, 'temporal.sqlite'),
        namespace: config.temporalNamespace,
        logFile: path.join(logDir, 'temporal.log'),
        ...(codecUrl ? { uiCodecEndpoint: codecUrl } : {}),
      }),
    );
    uiUrl = temporal.uiUrl;
    stops.push({ name: 'Temporal dev server', stop: temporal.stop });
    recordProcess({ name: 'temporal-dev', pid: temporal.pid, address: temporal.address });
  }

  await timed('database migrations', () => migrate(databaseUrl));
  computeHosts.push(...(await daemonsReady));

  // koffi runs libvirt calls on libuv's pool: a slow unplug must not starve file and DNS work.
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    ...temporalEnv,
    TETHER_VOLUME_DIR: config.volumeDir,
    UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16',
  };
  // Worker metrics (when TETHER_METRICS_PORT / TETHER_SDK_METRICS_PORT are set): one port per process.
  const port = (base: string | undefined, offset: number) => (base ? String(Number(base) + offset) : '');
  const metricsEnv = (offset: number) => ({
    TETHER_METRICS_PORT: port(process.env.TETHER_METRICS_PORT, offset),
    TETHER_SDK_METRICS_PORT: port(process.env.TETHER_SDK_METRICS_PORT, offset),
  });
  const api = `http://${config.apiHost}:${config.apiPort}`;
  supervise('control-plane', 'control-plane.ts', { ...env, ...metricsEnv(0) });
  for (const [i, { host, libvirtUri }] of computeHosts.entries()) {
    const name = computeHosts.length === 1 ? 'compute-agent' : `compute-agent-${host}`;
    supervise(name, 'compute-agent.ts', { ...env, ...metricsEnv(1 + i), TETHER_COMPUTE_HOST: host, LIBVIRT_URI: libvirtUri }, { host, libvirtUri });
  }
  supervise('api-server', 'api-server.ts', env, { address: `${config.apiHost}:${config.apiPort}` });
  if (codecUrl) supervise('codec-server', 'codec-server.ts', env, { address: codecUrl.replace(/^http:\/\//, '') });
  await timed(`control-plane worker, ${computeHosts.length === 1 ? 'compute agent' : `${computeHosts.length} compute agents`} and API ready`, () => waitForHealth(`${api}/healthz`, temporalMode === 'cluster' ? 300_000 : 120_000));
  await stackWrite;

  say('');
  say(`tether is running.`);
  const blockStorage = blockStorageKind() === 'cinder' ? `Cinder at ${process.env.CINDER_ENDPOINT ?? 'the Keystone catalog'}` : `${api}/v3`;
  say(`  API (Nova-compatible):  ${api}/v2.1   (block storage: ${blockStorage})`);
  if (uiUrl) say(`  Temporal UI:            ${uiUrl}`);
  say(`  Temporal frontend:      ${temporalEnv.TEMPORAL_ADDRESS}${temporalMode === 'cluster' ? ' (mTLS: certificates in ' + path.dirname(temporalEnv.TEMPORAL_TLS_CA!) + ')' : ''}`);
  if (codecUrl) say(`  Codec server:           ${codecUrl} (Authorization: Bearer $TETHER_CODEC_TOKEN)`);
  say(`  Logs:                   ${logDir}`);
  say(`  Processes (${shown(stackFile)}):`);
  for (const p of stackProcesses.values()) {
    const where = [p.address, p.host && `host ${p.host}`, p.libvirtUri].filter(Boolean).join('  ');
    say(`    ${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${where}`);
  }
  say('');
  if (temporalMode === 'cluster') say(`The CLI needs the cluster's addresses and certificates:  set -a; . ${shown(clusterEnvFile)}; set +a`);
  say('Try:  npx tether server create vm1 && npx tether volume create v1 --size 1 && npx tether attach vm1 v1');
  say('Ctrl-C stops everything.');
}

main().catch(async (err: unknown) => {
  say(`tether failed to start: ${(err as Error).message}`);
  await shutdown(1);
});
