/**
 * `npm run scale` (= node --import tsx bench/scale-sim.ts): the scale simulation. Instance queues
 * as simulated compute hosts × instances: `--hosts` hosts (default 100), each the real ComputeAgent
 * (its own Temporal connection, database pool and LISTEN connection, one activity-only Worker per
 * `instance-<uuid>` queue, the real host activities) on a SimulatedHypervisor (bench/sim-hypervisor.ts)
 * instead of libvirt, `--processes` hosts processes (bench/scale-sim-child.ts) sharing them out. The
 * instances are rows in the database as the agent expects (host = a simulated host, no domain).
 * Against each target — the Temporal dev server, and the two-node cluster on PostgreSQL with mTLS
 * (stack/temporal-cluster.ts) — and at each step of `--steps` queues (default 1000,5000,10000):
 *   - RSS and CPU at idle (over `--idle-ms`) of the Temporal server processes, the hosts processes
 *     and the control-plane worker;
 *   - poll RPCs per second the frontends answered (their Prometheus `service_requests`) and the long
 *     polls they hold open (`service_pending_requests`);
 *   - PostgreSQL connections (pg_stat_activity, by application);
 *   - the load average and free memory of the machine (it is shared).
 * Then, at the largest step reached: `--attaches` (default 1000) attaches of as many volumes to as many
 * different instances, all requested at once through TetherService.attachVolume (the API's path:
 * update-with-start, the real AttachVolume workflow on the real control-plane worker, its host steps
 * on the simulated hosts): the time until every attach answered its reservation (dispatched) and until
 * every saga finished (drained), checked against the database.
 *
 *   --targets=dev,cluster   (default both; cluster needs stack/temporal-cluster.ts)
 *   --steps=1000,5000,10000 --hosts=100 --processes=4 --attaches=1000 --idle-ms=60000 (a long poll lasts 60 s: a shorter window misses renewals)
 *   --attach-at=1000        the step after whose idle measurement the attaches run (default the first)
 *   --attach-timeout-s=900  stop waiting for the attaches after this long (the run records how many finished)
 *   --min-free-mb=3000      stop adding queues when the machine has less memory available than this
 *   --out=docs/scale.json   (then `npm run docs` renders docs/scale.md)
 *   --merge                 keep the other targets already in the output file (run one target at a time)
 *   --burst-only            measure the attach burst again and replace only the `attaches` of each target
 *                           run in the output file (its steps, and the file's command and date, stay those
 *                           of the run that measured them; the burst carries its own command and date);
 *                           use with --steps=<the burst's step>
 * PostgreSQL: DATABASE_URL when set, else an embedded one (max_connections raised to 2000).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { loadConfig, projectRoot } from '../src/config.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { LocalVolumeService } from '../src/blockstorage/local-volume-service.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { TetherError } from '../src/errors.ts';
import { startTemporalDevServer } from '../stack/temporal-dev-server.ts';
import { startEmbeddedPostgres } from '../stack/embedded-postgres.ts';
import { findFreePort } from '../stack/free-port.ts';
import { pendingPolls, pollRequests, scrape, type Sample } from './metrics.ts';
import { loadAverage, pidListeningOn, sample } from './procs.ts';
import { percentile } from './stats.ts';
import { forkMeasuredChild, type MeasuredChild } from './measured-child.ts';
import { tlsConfig, type SimChildConfig, type SimChildStats, type SimEndpoint, type SimTls } from './scale-sim-config.ts';
import type { AttachBurst, ScaleSimResults, ScaleStep, ScaleTargetResult } from './scale-sim-report.ts';

const argv = process.argv.slice(2);
const opt = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const targets = (opt('targets') ?? 'dev,cluster').split(',').filter(Boolean) as Array<'dev' | 'cluster'>;
const steps = (opt('steps') ?? '1000,5000,10000').split(',').map(Number);
const hostCount = Number(opt('hosts') ?? 100);
const processCount = Number(opt('processes') ?? 4);
const attachCount = Number(opt('attaches') ?? 1000);
const idleMs = Number(opt('idle-ms') ?? 60_000);
const minFreeMb = Number(opt('min-free-mb') ?? 3000);
const attachAt = Number(opt('attach-at') ?? steps[0]);
const attachTimeoutMs = Number(opt('attach-timeout-s') ?? 900) * 1000;
const outFile = path.resolve(projectRoot, opt('out') ?? 'docs/scale.json');
const burstOnly = argv.includes('--burst-only');
const merge = argv.includes('--merge') || burstOnly;
const NAMESPACE = 'default';
const childScript = fileURLToPath(new URL('./scale-sim-child.ts', import.meta.url));

const t0 = performance.now();
/** What an interrupted run must stop (Temporal, the children), newest first. */
const onInterrupt = new Set<() => Promise<void>>();
const log = (s: string) => process.stdout.write(`[${Math.round((performance.now() - t0) / 1000)} s] ${s}\n`);

// ---- processes -------------------------------------------------------------------------------

type SimChild = MeasuredChild<SimChildStats>;

function startSimChild(config: SimChildConfig, logFile: string): Promise<SimChild> {
  return forkMeasuredChild<SimChildConfig, SimChildStats>({
    script: childScript,
    execArgv: ['--import', 'tsx', '--max-old-space-size=6144'],
    env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
    logFile,
    config,
    label: `scale-sim child (${config.role})`,
    stopTimeoutMs: 120_000,
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 1000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

function memAvailableMb(): number {
  const m = /MemAvailable:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

const mb = (kb: number) => Math.round(kb / 102.4) / 10;

// ---- Temporal targets ------------------------------------------------------------------------

interface Target {
  kind: 'dev' | 'cluster';
  description: string;
  frontends: SimEndpoint[];
  metricsUrls: string[];
  serverPids(): number[];
  stop(): Promise<void>;
}

async function startDev(dir: string): Promise<Target> {
  const config = loadConfig();
  const logFile = path.join(dir, 'temporal-dev.log');
  const temporal = await startTemporalDevServer({ binary: config.temporalBinary, port: await findFreePort(), logFile });
  let metricsUrl: string | undefined;
  for (let i = 0; i < 200 && !metricsUrl; i++) {
    metricsUrl = /Metrics:\s+(http:\/\/\S+\/metrics)/.exec(await fsp.readFile(logFile, 'utf8'))?.[1]?.replace('localhost', '127.0.0.1');
    if (!metricsUrl) await sleep(50);
  }
  return {
    kind: 'dev',
    description: 'Temporal dev server (CLI v1.5.1 = server v1.29.1, SQLite in memory, one process), plaintext',
    frontends: [{ address: temporal.address }],
    metricsUrls: metricsUrl ? [metricsUrl] : [],
    serverPids: () => [temporal.pid],
    stop: () => temporal.stop(),
  };
}

interface ClusterModule {
  startTemporalCluster(o: { dataDir: string; databaseUrl: string; nodes?: number; metrics?: boolean }): Promise<{
    frontends: string[];
    tls: SimTls;
    processes: Array<{ name: string; pid: number; address: string; metricsUrl?: string }>;
    stop(): Promise<void>;
  }>;
}

async function startCluster(dir: string, adminUrl: string, id: string): Promise<Target | string> {
  const file = path.join(projectRoot, 'stack', 'temporal-cluster.ts');
  if (!fs.existsSync(file)) return 'stack/temporal-cluster.ts is not in this checkout';
  const mod = (await import(file)) as ClusterModule;
  const u = new URL(adminUrl);
  u.pathname = `/temporal_scale_${id}`;
  const cluster = await mod.startTemporalCluster({ dataDir: path.join(dir, 'cluster'), databaseUrl: u.toString(), nodes: 2, metrics: true });
  const metricsUrls = cluster.processes.map((p) => p.metricsUrl).filter((x): x is string => !!x);
  return {
    kind: 'cluster',
    description: `Temporal cluster: ${cluster.processes.length} nodes of server v1.29.1 (all four services each) on PostgreSQL, mTLS`,
    frontends: cluster.frontends.map((address) => ({ address, tls: cluster.tls })),
    metricsUrls,
    serverPids: () => cluster.processes.map((p) => p.pid),
    stop: () => cluster.stop(),
  };
}

// ---- measurements ----------------------------------------------------------------------------

async function scrapeAll(urls: string[]): Promise<Sample[]> {
  return (await Promise.all(urls.map((u) => scrape(u)))).flat();
}

async function pgConnections(adminUrl: string): Promise<{ total: number; byApplication: Record<string, number>; maxConnections: number }> {
  const c = new pg.Client({ connectionString: adminUrl, application_name: 'tether-scale-sim-probe' });
  await c.connect();
  try {
    const { rows } = await c.query<{ app: string; n: string }>(
      `SELECT CASE WHEN application_name LIKE 'tether-agent-%' THEN 'tether-agent-* (simulated hosts)'
                   WHEN application_name = '' THEN coalesce('(no name) db ' || datname, '(background)')
                   ELSE application_name END AS app, count(*) AS n
         FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 2 DESC`,
    );
    const max = await c.query<{ max_connections: string }>('SHOW max_connections');
    const byApplication = Object.fromEntries(rows.map((r) => [r.app, Number(r.n)]));
    return { total: rows.reduce((s, r) => s + Number(r.n), 0), byApplication, maxConnections: Number(max.rows[0]!.max_connections) };
  } finally {
    await c.end();
  }
}

function sumPolls(samples: Sample[]): number {
  return Object.values(pollRequests(samples, NAMESPACE)).reduce((a, b) => a + b, 0);
}

async function insertInstances(db: Database, hosts: string[], perHost: number, offset: number): Promise<void> {
  for (const host of hosts) {
    const uuids = Array.from({ length: perHost }, () => randomUUID());
    await db.query(
      `INSERT INTO instances (uuid, name, project_id, host, vm_state, availability_zone, root_device_name, default_disk_bus)
       SELECT u, 'sim-' || $2 || '-' || ($3::int + ord), 'scale', $2, 'active', 'nova', '/dev/sda', 'scsi'
       FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, ord)`,
      [uuids, host, offset],
    );
  }
}

async function runTarget(kind: 'dev' | 'cluster', adminUrl: string, runId: string, workDir: string, save: (partial: ScaleTargetResult) => Promise<void>): Promise<ScaleTargetResult> {
  const id = `${runId}_${kind}`;
  const dir = path.join(workDir, kind);
  await fsp.mkdir(dir, { recursive: true });
  // logs outside the work folder (removed at the end): bench-results/ is git-ignored
  const logDir = path.join(projectRoot, 'bench-results', 'scale-logs', runId, kind);
  await fsp.mkdir(logDir, { recursive: true });
  log(`${kind}: logs in ${path.relative(projectRoot, logDir)}`);
  const dbName = `tether_scale_${id}`;
  {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
  }
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${dbName}`;
  const databaseUrl = dbUrl.toString();
  await migrate(databaseUrl);
  const db = createDatabase(databaseUrl, { max: 20, applicationName: 'tether-scale-driver' });

  log(`${kind}: starting Temporal`);
  const started = kind === 'dev' ? await startDev(logDir) : await startCluster(dir, adminUrl, id);
  if (typeof started === 'string') {
    await db.end();
    return { target: kind, command: `npm run scale -- ${argv.join(' ')}`.trim(), date: new Date().toISOString(), skipped: started, description: '', steps: [] };
  }
  const target = started;
  const children: SimChild[] = [];
  const stopAll = async () => {
    await Promise.all(children.map((c) => c.stop().catch(() => undefined)));
    await target.stop().catch(() => undefined);
  };
  onInterrupt.add(stopAll);
  const result: ScaleTargetResult = { target: kind, command: `npm run scale -- ${argv.join(' ')}`.trim(), date: new Date().toISOString(), description: target.description, frontends: target.frontends.length, metricsScraped: target.metricsUrls.length, steps: [] };
  try {
    const front0 = target.frontends[0]!;
    const tls = tlsConfig(front0.tls);
    const clientConnection = await Connection.connect({ address: front0.address, ...(tls ? { tls } : {}) });
    const client = new Client({ connection: clientConnection, namespace: NAMESPACE });
    const controlTaskQueue = `scale-control-${id}`;
    const volumeDir = path.join(dir, 'volumes');
    const control = await startSimChild({ role: 'control', namespace: NAMESPACE, databaseUrl, endpoint: front0, taskQueue: controlTaskQueue, volumeDir }, path.join(logDir, 'control.log'));
    children.push(control);
    const service = new TetherService({
      db,
      client,
      blockStorage: new LocalVolumeService(db, { volumeDir, availabilityZone: 'nova' }),
      config: { controlTaskQueue, computeHost: 'sim-host-0', availabilityZone: 'nova', defaultDiskBus: 'scsi' },
    });

    const hosts = Array.from({ length: hostCount }, (_, i) => `sim-${id}-h${String(i).padStart(4, '0')}`);
    let have = 0;
    let hostChildren: SimChild[] = [];
    const served = async () => (await Promise.all(hostChildren.map((c) => c.stats()))).reduce((n, s) => n + s.queues, 0);
    for (const size of steps) {
      const free = memAvailableMb();
      if (free < minFreeMb) {
        result.stoppedBefore = { queues: size, why: `${free} MB of memory available, less than --min-free-mb=${minFreeMb}` };
        log(`${kind}: stopping before ${size} queues: ${result.stoppedBefore.why}`);
        break;
      }
      const perHost = Math.ceil(size / hostCount) - have / hostCount;
      const tStep = performance.now();
      if (perHost > 0) await insertInstances(db, hosts, perHost, have / hostCount);
      have += perHost * hostCount;
      if (hostChildren.length === 0) {
        const per = Math.ceil(hostCount / processCount);
        hostChildren = await Promise.all(
          Array.from({ length: processCount }, (_, p) =>
            startSimChild(
              {
                role: 'hosts',
                namespace: NAMESPACE,
                databaseUrl,
                poolMax: 3,
                hosts: hosts.slice(p * per, (p + 1) * per).map((name, i) => ({ name, endpoint: target.frontends[(p * per + i) % target.frontends.length]! })),
              },
              path.join(logDir, `hosts-${p}.log`),
            ),
          ),
        );
        children.push(...hostChildren);
      }
      let lastLogged = 0;
      await waitFor(
        `${have} instance queues served`,
        async () => {
          const n = await served();
          if (performance.now() - lastLogged > 15_000) {
            lastLogged = performance.now();
            log(`${kind}: ${n}/${have} queues served`);
          }
          return n >= have;
        },
        40 * 60_000,
        1000,
      );
      const allServingMs = Math.round(performance.now() - tStep);
      log(`${kind}: ${have} queues served after ${allServingMs} ms; settling`);
      await sleep(15_000);

      const loadBefore = loadAverage();
      const serverBefore = target.serverPids().map(sample);
      const metricsBefore = await scrapeAll(target.metricsUrls);
      const tw = performance.now();
      const [idle, controlIdle] = await Promise.all([Promise.all(hostChildren.map((c) => c.idleCpu(idleMs))), control.idleCpu(idleMs)]);
      const windowS = (performance.now() - tw) / 1000;
      const metricsAfter = await scrapeAll(target.metricsUrls);
      const serverAfter = target.serverPids().map(sample);
      const polls = sumPolls(metricsAfter) - sumPolls(metricsBefore);
      const connections = await pgConnections(adminUrl);
      const serverCpuSec = serverAfter.reduce((s, x, i) => s + (x && serverBefore[i] ? x.cpuSec - serverBefore[i]!.cpuSec : 0), 0);
      const step: ScaleStep = {
        queues: have,
        hosts: hostCount,
        instancesPerHost: have / hostCount,
        hostsProcesses: hostChildren.length,
        allServingMs,
        idleWindowS: Math.round(windowS * 10) / 10,
        server: {
          processes: serverAfter.filter(Boolean).length,
          rssMb: mb(serverAfter.reduce((s, x) => s + (x?.rssKb ?? 0), 0)),
          idleCpuPct: Math.round((serverCpuSec / windowS) * 1000) / 10,
        },
        agents: {
          rssMb: mb(idle.reduce((s, x) => s + x.stats.rssKb, 0)),
          heapMb: Math.round(idle.reduce((s, x) => s + x.stats.heapUsedMb, 0) * 10) / 10,
          idleCpuPct: Math.round((idle.reduce((s, x) => s + x.cpuMs, 0) / (windowS * 1000)) * 1000) / 10,
          rssKbPerQueue: Math.round(idle.reduce((s, x) => s + x.stats.rssKb, 0) / have),
        },
        control: { rssMb: mb(controlIdle.stats.rssKb), idleCpuPct: Math.round((controlIdle.cpuMs / (windowS * 1000)) * 1000) / 10 },
        pollsPerSecond: target.metricsUrls.length ? Math.round((polls / windowS) * 10) / 10 : null,
        pollsByOperation: pollRequests(metricsAfter, NAMESPACE),
        pendingPolls: pendingPolls(metricsAfter, NAMESPACE),
        postgres: connections,
        machine: { loadAverage1mBefore: loadBefore, loadAverage1mAfter: loadAverage(), memAvailableMb: memAvailableMb(), cpus: os.cpus().length },
      };
      result.steps.push(step);
      await save(result);
      if (attachCount > 0 && !result.attaches && have >= attachAt) {
        result.attaches = await attachBurst(db, service, hosts, attachCount, kind, adminUrl, target, { control: [control.pid], agents: hostChildren.map((c) => c.pid) });
        result.attaches.atQueues = have;
        await save(result);
      }
      log(
        `${kind} ${have} queues: server RSS ${step.server.rssMb} MB CPU ${step.server.idleCpuPct}%, agents RSS ${step.agents.rssMb} MB (${step.agents.rssKbPerQueue} kB/queue) CPU ${step.agents.idleCpuPct}%, ` +
          `polls/s ${step.pollsPerSecond}, open polls ${JSON.stringify(step.pendingPolls)}, PostgreSQL ${connections.total} connections ${JSON.stringify(connections.byApplication)}, load ${loadBefore}→${step.machine.loadAverage1mAfter}`,
      );
    }

    await clientConnection.close();
  } catch (err) {
    result.error = (err as Error).stack ?? String(err);
    log(`${kind}: FAILED: ${(err as Error).message}`);
  } finally {
    onInterrupt.delete(stopAll);
    await stopAll();
    await db.end().catch(() => undefined);
  }
  return result;
}

const cpuOf = (pids: number[]) => pids.map(sample).reduce((a, x) => a + (x?.cpuSec ?? 0), 0);

async function attachBurst(
  db: Database,
  service: TetherService,
  hosts: string[],
  count: number,
  kind: string,
  adminUrl: string,
  target: Target,
  pids: { control: number[]; agents: number[] },
): Promise<AttachBurst> {
  // One instance per attach, spread over every host (round robin), each with a volume of its own.
  const { rows } = await db.query<{ uuid: string; host: string }>(
    `SELECT uuid, host FROM (SELECT uuid, host, row_number() OVER (PARTITION BY host ORDER BY uuid) AS r FROM instances WHERE deleted_at IS NULL) t
      ORDER BY r, host LIMIT $1`,
    [count],
  );
  const volumeIds = rows.map(() => randomUUID());
  await db.query(
    `INSERT INTO volumes (id, name, project_id, size_gb, status, availability_zone, file_path, file_format)
     SELECT v, 'sim-volume-' || ord, 'scale', 1, 'available', 'nova', '/nonexistent/sim-volume-' || v || '.qcow2', 'qcow2'
     FROM unnest($1::uuid[]) WITH ORDINALITY AS t(v, ord)`,
    [volumeIds],
  );
  log(`${kind}: ${rows.length} attaches to ${rows.length} different instances on ${new Set(rows.map((r) => r.host)).size} hosts, all requested at once`);
  const loadBefore = loadAverage();
  const serverBefore = target.serverPids().map(sample);
  const metricsBefore = await scrapeAll(target.metricsUrls);
  const cpuBefore = { control: cpuOf(pids.control), agents: cpuOf(pids.agents), driver: process.cpuUsage() };
  const start = performance.now();
  const reserved: number[] = [];
  const finished: number[] = [];
  const failures: string[] = [];
  let notConfirmed = 0;
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const all = Promise.all(
    rows.map(async (row, i) => {
      try {
        // as an API client does: a 503 "not confirmed yet" is asked again after its Retry-After
        let handle: Awaited<ReturnType<TetherService['attachVolume']>>['handle'] | undefined;
        while (!handle) {
          try {
            ({ handle } = await service.attachVolume({ server: row.uuid, volume: volumeIds[i]! }));
          } catch (err) {
            if (!(err instanceof TetherError) || err.type !== 'AttachNotConfirmed' || timedOut) throw err;
            notConfirmed++;
            await sleep((err.retryAfterSeconds ?? 5) * 1000);
          }
        }
        reserved.push(performance.now() - start);
        await service.awaitAttach(handle);
        finished.push(performance.now() - start);
      } catch (err) {
        if (!timedOut) failures.push((err as Error).message);
      }
    }),
  );
  const progress = setInterval(() => log(`${kind}: ${reserved.length} reserved, ${finished.length} finished, ${failures.length} failed, ${notConfirmed} answers 503 (asked again)`), 30_000);
  await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(() => ((timedOut = true), resolve()), attachTimeoutMs)))]);
  clearTimeout(timer);
  clearInterval(progress);
  const drainedMs = Math.round(performance.now() - start);
  const finishedCount = finished.length;
  const driverCpu = process.cpuUsage(cpuBefore.driver);
  const cpuSec = {
    control: Math.round((cpuOf(pids.control) - cpuBefore.control) * 10) / 10,
    agents: Math.round((cpuOf(pids.agents) - cpuBefore.agents) * 10) / 10,
    driver: Math.round((driverCpu.user + driverCpu.system) / 1e5) / 10,
  };
  const metricsAfter = await scrapeAll(target.metricsUrls);
  const serverAfter = target.serverPids().map(sample);
  const { rows: check } = await db.query<{ bdms: string; attachments: string; inuse: string }>(
    `SELECT (SELECT count(*) FROM block_device_mappings WHERE volume_id = ANY($1::uuid[]) AND attachment_id IS NOT NULL AND deleted_at IS NULL) AS bdms,
            (SELECT count(*) FROM volume_attachments WHERE volume_id = ANY($1::uuid[]) AND status = 'attached') AS attachments,
            (SELECT count(*) FROM volumes WHERE id = ANY($1::uuid[]) AND status = 'in-use') AS inuse`,
    [volumeIds],
  );
  const connections = await pgConnections(adminUrl);
  reserved.sort((a, b) => a - b);
  finished.sort((a, b) => a - b);
  const r = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? null : Math.round(x));
  const burst: AttachBurst = {
    workflow: 'the real AttachVolume workflow (update-with-start through TetherService.attachVolume), host steps reserveDeviceName and attachDisk on the simulated hosts',
    attaches: rows.length,
    instances: new Set(rows.map((x) => x.uuid)).size,
    hosts: new Set(rows.map((x) => x.host)).size,
    dispatchedMs: reserved.length === rows.length ? r(reserved[reserved.length - 1]) : null,
    drainedMs: timedOut ? null : drainedMs,
    timedOutAfterMs: timedOut ? attachTimeoutMs : undefined,
    reservedInTime: reserved.length,
    reservationMs: { p50: r(percentile(reserved, 50)), p99: r(percentile(reserved, 99)) },
    completionMs: { p50: r(percentile(finished, 50)), p99: r(percentile(finished, 99)) },
    attachesPerSecond: Math.round((finishedCount / (drainedMs / 1000)) * 10) / 10,
    succeeded: finishedCount,
    failed: failures.length,
    failures: [...new Set(failures)].slice(0, 5),
    notConfirmedAnswers: notConfirmed,
    database: { bdmsAttached: Number(check[0]!.bdms), attachmentsAttached: Number(check[0]!.attachments), volumesInUse: Number(check[0]!.inuse) },
    cpuSec,
    serverCpuSec: Math.round(serverAfter.reduce((s, x, i) => s + (x && serverBefore[i] ? x.cpuSec - serverBefore[i]!.cpuSec : 0), 0) * 10) / 10,
    pollRpcs: sumPolls(metricsAfter) - sumPolls(metricsBefore),
    postgresConnectionsAfter: connections.total,
    loadAverage1m: { before: loadBefore, after: loadAverage() },
  };
  log(`${kind}: attaches dispatched in ${burst.dispatchedMs} ms, drained in ${burst.drainedMs} ms (${burst.succeeded} ok, ${burst.failed} failed); database: ${JSON.stringify(burst.database)}`);
  return burst;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const runId = randomBytes(3).toString('hex');
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'scale-sim-'));
  fs.chmodSync(workDir, 0o755);
  log(`scale simulation ${runId}: targets ${targets.join(', ')}, steps ${steps.join(', ')} queues on ${hostCount} hosts in ${processCount} processes; work folder ${workDir}`);
  let adminUrl: string;
  let stopPostgres: () => Promise<void> = async () => undefined;
  let postgresKind: string;
  if (process.env.DATABASE_URL) {
    adminUrl = process.env.DATABASE_URL;
    postgresKind = 'DATABASE_URL';
  } else {
    const dataDir = path.join(workDir, 'pg', 'data');
    const port = await findFreePort();
    let embedded = await startEmbeddedPostgres({ dataDir, port, database: 'tether' });
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal);
    const u = new URL(embedded.url);
    u.pathname = '/postgres';
    adminUrl = u.toString();
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query('ALTER SYSTEM SET max_connections = 2000');
    await c.end();
    await embedded.stop();
    embedded = await startEmbeddedPostgres({ dataDir, port, database: 'tether' });
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal);
    stopPostgres = () => embedded.stop();
    postgresKind = 'embedded PostgreSQL 17 (max_connections 2000)';
  }
  const pgPid = pidListeningOn(Number(new URL(adminUrl).port || 5432));
  const results: ScaleSimResults = {
    command: `npm run scale -- ${argv.join(' ')}`.trim(),
    date: new Date().toISOString(),
    commit: (() => {
      try {
        return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: projectRoot, encoding: 'utf8' }).trim();
      } catch {
        return undefined;
      }
    })(),
    machine: { cpus: os.cpus().length, memTotalMb: Math.round(os.totalmem() / 1048576), loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    postgres: postgresKind,
    settings: { hosts: hostCount, processes: processCount, steps, attaches: attachCount, idleWindowMs: idleMs, agentPoolMax: 3 },
    targets: [],
  };
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    log('interrupted: stopping');
    void Promise.all([...onInterrupt].map((f) => f()))
      .then(() => stopPostgres())
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const previousFile = merge && fs.existsSync(outFile) ? (JSON.parse(fs.readFileSync(outFile, 'utf8')) as ScaleSimResults) : undefined;
  if (previousFile) {
    const previous = previousFile;
    results.targets.push(...previous.targets.filter((t) => !targets.includes(t.target)));
    if (!burstOnly) results.machine.earlierRuns = [...(previous.machine.earlierRuns ?? []), { date: previous.date, command: previous.command, loadAverageAtStart: previous.machine.loadAverageAtStart, ...(previous.machine.loadAverageAtEnd ? { loadAverageAtEnd: previous.machine.loadAverageAtEnd } : {}) }];
  }
  try {
    const write = async () => {
      results.machine.loadAverageAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
      results.durationS = Math.round((performance.now() - t0) / 1000);
      await fsp.mkdir(path.dirname(outFile), { recursive: true });
      await fsp.writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
    };
    for (const kind of targets) {
      const place = (t: ScaleTargetResult) => {
        results.targets = results.targets.filter((x) => x.target !== kind);
        results.targets.push(t);
        results.targets.sort((a, b) => a.target.localeCompare(b.target));
      };
      if (burstOnly) {
        const earlier = previousFile?.targets.find((t) => t.target === kind);
        if (!earlier) throw new Error(`--burst-only: ${path.relative(projectRoot, outFile)} has no ${kind} target to add the burst to`);
        const measured = await runTarget(kind, adminUrl, runId, workDir, async () => undefined);
        if (!measured.attaches) throw new Error(`--burst-only: the ${kind} run measured no attach burst${measured.error ? `: ${measured.error}` : ''}`);
        const { command, date, commit } = results;
        place({ ...earlier, attaches: { ...measured.attaches, run: { command, date, commit: String(commit) } } });
        // the file stays the earlier run's: only this target's burst is new
        Object.assign(results, { command: previousFile!.command, date: previousFile!.date, commit: previousFile!.commit, machine: previousFile!.machine, settings: previousFile!.settings, durationS: previousFile!.durationS });
        await fsp.writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
        continue;
      }
      // written after every step too: an interrupted run keeps what it measured
      place(await runTarget(kind, adminUrl, runId, workDir, async (partial) => {
        place({ ...partial, error: partial.error ?? 'partial: the run was still going when this was written' });
        await write();
      }));
      results.machine.loadAverageAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
      results.durationS = Math.round((performance.now() - t0) / 1000);
      await fsp.mkdir(path.dirname(outFile), { recursive: true });
      await fsp.writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
    }
  } finally {
    void pgPid;
    await stopPostgres().catch(() => undefined);
    await fsp.rm(workDir, { recursive: true, force: true }).catch(() => undefined);
  }
  log(`wrote ${path.relative(projectRoot, outFile)}; \`npm run docs\` renders docs/scale.md from it`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
