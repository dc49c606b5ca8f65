/**
 * `npm start`: the whole embedded stack in the foreground.
 *   libvirtd (started if none runs) → PostgreSQL (DATABASE_URL, or embedded) → Temporal (TEMPORAL_ADDRESS,
 *   or the dev server with a persistent SQLite file) → migrations → control-plane worker, compute agent
 *   and API server as child processes (restarted if they die) → waits for GET /healthz → prints the URLs.
 * Ctrl-C stops everything it started, in reverse order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
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
import { blockStorageKind } from '../src/blockstorage/index.ts';

const config = loadConfig();
// A bad TETHER_CODEC_KEYS fails here, at start, rather than in every process.
const codec = loadCodecServerSettings();
const codecUrl = codec.keys ? `http://127.0.0.1:${codec.port}` : undefined;
const logDir = path.join(config.dataDir, 'logs');
const stops: Array<{ name: string; stop: () => Promise<void> }> = [];
const children = new Map<string, ChildProcess>();
let shuttingDown = false;

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
function supervise(name: string, script: string, env: NodeJS.ProcessEnv): void {
  const log = createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
  const start = () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'workers', script)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    children.set(name, child);
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

  let databaseUrl = config.databaseUrl;
  if (!config.databaseUrlFromEnv) {
    const pg = await timed(`embedded PostgreSQL on port ${config.embeddedPgPort}`, () =>
      startEmbeddedPostgres({ dataDir: path.join(config.dataDir, 'postgres'), port: config.embeddedPgPort, database: 'tether', password: 'tether' }),
    );
    databaseUrl = pg.url;
    stops.push({ name: 'PostgreSQL', stop: pg.stop });
    // embedded-postgres installs signal handlers that exit the process; the shutdown above is ours.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal);
    process.on('SIGINT', () => void shutdown(0));
    process.on('SIGTERM', () => void shutdown(0));
  }

  let uiUrl: string | undefined;
  if (config.temporalAddressFromEnv) {
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
  }

  await timed('database migrations', () => migrate(databaseUrl));

  // koffi runs libvirt calls on libuv's pool: a slow unplug must not starve file and DNS work.
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: config.temporalAddress,
    TETHER_VOLUME_DIR: config.volumeDir,
    UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16',
  };
  // Worker metrics (when TETHER_METRICS_PORT / TETHER_SDK_METRICS_PORT are set): one port per process.
  const port = (base: string | undefined, offset: number) => (base ? String(Number(base) + offset) : '');
  const metricsEnv = (offset: number) => ({
    TETHER_METRICS_PORT: port(process.env.TETHER_METRICS_PORT, offset),
    TETHER_SDK_METRICS_PORT: port(process.env.TETHER_SDK_METRICS_PORT, offset),
  });
  supervise('control-plane', 'control-plane.ts', { ...env, ...metricsEnv(0) });
  supervise('compute-agent', 'compute-agent.ts', { ...env, ...metricsEnv(1) });
  supervise('api-server', 'api-server.ts', env);
  if (codecUrl) supervise('codec-server', 'codec-server.ts', env);
  const api = `http://${config.apiHost}:${config.apiPort}`;
  await timed('control-plane worker, compute agent and API ready', () => waitForHealth(`${api}/healthz`, 120_000));

  say('');
  say(`tether is running.`);
  const blockStorage = blockStorageKind() === 'cinder' ? `Cinder at ${process.env.CINDER_ENDPOINT ?? 'the Keystone catalog'}` : `${api}/v3`;
  say(`  API (Nova-compatible):  ${api}/v2.1   (block storage: ${blockStorage})`);
  if (uiUrl) say(`  Temporal UI:            ${uiUrl}`);
  say(`  Temporal frontend:      ${config.temporalAddress}`);
  if (codecUrl) say(`  Codec server:           ${codecUrl} (Authorization: Bearer $TETHER_CODEC_TOKEN)`);
  say(`  Logs:                   ${logDir}`);
  say('');
  say('Try:  npx tether server create vm1 && npx tether volume create v1 --size 1 && npx tether attach vm1 v1');
  say('Ctrl-C stops everything.');
}

main().catch(async (err: unknown) => {
  say(`tether failed to start: ${(err as Error).message}`);
  await shutdown(1);
});
