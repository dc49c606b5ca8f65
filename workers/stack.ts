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
 * print the same. Ctrl-C stops everything it started, in reverse order. The stack itself is built by
 * stack/builder.ts, as for the chaos runner, the benchmark and the tests.
 */
import { writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../src/config.ts';
import { loadCodecServerSettings } from '../src/security/codec-config.ts';
import { blockStorageKind } from '../src/blockstorage/index.ts';
import { buildStack, type ProcessSpec, type Stack } from '../stack/builder.ts';
import { startIsolatedLibvirtd } from '../stack/libvirtd-isolated.ts';

const config = loadConfig();
// A bad TETHER_CODEC_KEYS fails here, at start, rather than in every process.
const codec = loadCodecServerSettings();
const codecUrl = codec.keys ? `http://127.0.0.1:${codec.port}` : undefined;
const logDir = path.join(config.dataDir, 'logs');

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

const starting = new AbortController();
let stack: Stack | undefined;
/** The libvirt daemons of the other compute hosts (cluster mode): stopped after the stack. */
const daemonStops: Array<() => Promise<void>> = [];
let shuttingDown = false;

async function shutdown(code: number): Promise<never> {
  if (shuttingDown) process.exit(code);
  shuttingDown = true;
  say('\nStopping tether…');
  starting.abort(); // a start under way stops what it started, and main() ends here too
  await stack?.stop();
  for (const stop of daemonStops) await stop().catch((err: unknown) => say(`  ! ${(err as Error).message}`));
  process.exit(code);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  say(`Starting tether (data in ${config.dataDir})`);

  const computeHosts: Array<{ host: string; libvirtUri: string }> = [{ host: config.computeHost, libvirtUri: config.libvirtUri }];
  // The other hosts' libvirt daemons start meanwhile (a daemon's first start probes QEMU: it can take a while).
  const isolatedHosts = Array.from({ length: computeHostCount - 1 }, (_, k) => `${config.computeHost.replace(/-\d+$/, '')}-${k + 2}`);
  const daemonsReady = Promise.all(
    isolatedHosts.map(async (host) => {
      const t0 = Date.now();
      const daemon = await startIsolatedLibvirtd({ name: host, stateDir: path.join(config.dataDir, 'hypervisors', host), keepState: true });
      daemonStops.push(() => daemon.stop().then(() => say(`  ✓ libvirtd of ${host} stopped`)));
      say(`  ✓ ${host}: a libvirt daemon of its own (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      recordProcess({ name: `libvirtd-${host}`, pid: daemon.libvirtdPid, host, libvirtUri: daemon.uri });
      return { host, libvirtUri: daemon.uri };
    }),
  );
  daemonsReady.catch(() => undefined); // awaited below

  stack = await buildStack({
    log: say,
    dataDir: config.dataDir,
    libvirtUri: config.libvirtUri,
    postgres: config.databaseUrlFromEnv ? { url: config.databaseUrl } : { embedded: { dataDir: path.join(config.dataDir, 'postgres'), port: config.embeddedPgPort } },
    // Temporal's own databases (cluster) on the same server: `temporal` and `temporal_visibility`.
    temporal:
      temporalMode === 'cluster'
        ? { cluster: { dataDir: path.join(config.dataDir, 'temporal-cluster') } }
        : config.temporalAddressFromEnv
          ? { address: config.temporalAddress, connection: config }
          : {
              dev: {
                port: config.temporalPort,
                uiPort: config.temporalUiPort,
                dbFile: path.join(config.dataDir, 'temporal.sqlite'),
                logFile: path.join(logDir, 'temporal.log'),
                ...(codecUrl ? { uiCodecEndpoint: codecUrl } : {}),
              },
            },
    namespace: config.temporalNamespace,
    signal: starting.signal,
  });
  const { temporal } = stack;
  const postmaster = await stack.postgres.postmasterPid();
  if (postmaster) recordProcess({ name: 'postgres', pid: postmaster, address: `127.0.0.1:${stack.postgres.port}` });
  for (const p of temporal.processes()) recordProcess(p);
  // What the CLI (and any other tether process) needs to reach this cluster: `set -a; . <data>/cluster.env; set +a`.
  if (temporal.kind === 'cluster') await writeFile(clusterEnvFile, `${Object.entries(temporal.env).map(([k, v]) => `${k}=${v}`).join('\n')}\n`);
  computeHosts.push(...(await daemonsReady));

  const env = { TETHER_VOLUME_DIR: config.volumeDir };
  // Worker metrics (when TETHER_METRICS_PORT / TETHER_SDK_METRICS_PORT are set): one port per process.
  const port = (base: string | undefined, offset: number) => (base ? String(Number(base) + offset) : '');
  const metricsEnv = (offset: number) => ({
    TETHER_METRICS_PORT: port(process.env.TETHER_METRICS_PORT, offset),
    TETHER_SDK_METRICS_PORT: port(process.env.TETHER_SDK_METRICS_PORT, offset),
  });
  const api = `http://${config.apiHost}:${config.apiPort}`;
  const child = (name: string, script: ProcessSpec['script'], extra: Record<string, string>, describe: Omit<StackProcess, 'name' | 'pid'> = {}): ProcessSpec => ({
    name,
    script,
    env: () => stack!.childEnv({ ...env, ...extra }),
    onStart: (pid) => recordProcess({ name, pid, ...describe }),
  });
  const s = stack;
  await s.startProcesses([
    child('control-plane', 'control-plane', metricsEnv(0)),
    ...computeHosts.map(({ host, libvirtUri }, i) =>
      child(computeHosts.length === 1 ? 'compute-agent' : `compute-agent-${host}`, 'compute-agent', { ...metricsEnv(1 + i), TETHER_COMPUTE_HOST: host, LIBVIRT_URI: libvirtUri }, { host, libvirtUri }),
    ),
    child('api-server', 'api-server', {}, { address: `${config.apiHost}:${config.apiPort}` }),
    ...(codecUrl ? [child('codec-server', 'codec-server', {}, { address: codecUrl.replace(/^http:\/\//, '') })] : []),
  ]);
  const t0 = Date.now();
  await waitForHealth(`${api}/healthz`, temporal.kind === 'cluster' ? 300_000 : 120_000);
  say(`  ✓ control-plane worker, ${computeHosts.length === 1 ? 'compute agent' : `${computeHosts.length} compute agents`} and API ready (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  await stackWrite;

  say('');
  say(`tether is running.`);
  const blockStorage = blockStorageKind() === 'cinder' ? `Cinder at ${process.env.CINDER_ENDPOINT ?? 'the Keystone catalog'}` : `${api}/v3`;
  say(`  API (Nova-compatible):  ${api}/v2.1   (block storage: ${blockStorage})`);
  if (temporal.uiUrl) say(`  Temporal UI:            ${temporal.uiUrl}`);
  say(`  Temporal frontend:      ${temporal.address}${temporal.tls ? ` (mTLS: certificates in ${path.dirname(temporal.tls.caFile)})` : ''}`);
  if (codecUrl) say(`  Codec server:           ${codecUrl} (Authorization: Bearer $TETHER_CODEC_TOKEN)`);
  say(`  Logs:                   ${logDir}`);
  say(`  Processes (${shown(stackFile)}):`);
  for (const p of stackProcesses.values()) {
    const where = [p.address, p.host && `host ${p.host}`, p.libvirtUri].filter(Boolean).join('  ');
    say(`    ${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${where}`);
  }
  say('');
  if (temporal.kind === 'cluster') say(`The CLI needs the cluster's addresses and certificates:  set -a; . ${shown(clusterEnvFile)}; set +a`);
  say('Try:  npx tether server create vm1 && npx tether volume create v1 --size 1 && npx tether attach vm1 v1');
  say('Ctrl-C stops everything.');
}

main().catch(async (err: unknown) => {
  if (shuttingDown) return; // Ctrl-C during the start: that shutdown finishes the job
  say(`tether failed to start: ${(err as Error).message}`);
  await shutdown(1);
});
