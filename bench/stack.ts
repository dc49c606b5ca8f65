/**
 * The embedded stack the benchmark runs on, assembled like test/support/test-stack.ts but with the
 * control-plane worker and the compute agent in their own Node processes (as `npm start` runs them):
 *   PostgreSQL: DATABASE_URL when set (a fresh database tether_bench_<id> on it), else an embedded
 *     PostgreSQL in a temporary folder;
 *   Temporal: a dev server of our own (in memory, free ports, tether's dynamic config);
 *   libvirt: qemu:///system (started when none answers);
 *   processes: bench/child.ts as control worker and as compute agent; the driver (this process)
 *     holds the service layer (TetherService), as the API server would.
 * Everything it creates (domains, volumes, database, temporary folders) is removed by cleanup().
 */
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Client, Connection } from '@temporalio/client';
import { loadConfig, projectRoot } from '../src/config.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { listInstances } from '../src/db/instances.ts';
import { LocalVolumeService } from '../src/blockstorage/local-volume-service.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { startTemporalDevServer, type TemporalDevServer } from '../stack/temporal-dev-server.ts';
import { startEmbeddedPostgres } from '../stack/embedded-postgres.ts';
import { ensureLibvirtd, type LibvirtdHandle } from '../stack/libvirtd.ts';
import { findFreePort } from '../stack/free-port.ts';
import type { Instance, Volume } from '../src/domain/types.ts';
import type { AgentVariant, ChildConfig, ChildStats, ControlVariant, ParentMessage } from './child.ts';
import { pidFromFile, pidListeningOn, withDescendants, type ProcGroup } from './procs.ts';

const run = promisify(execFile);
const childScript = fileURLToPath(new URL('./child.ts', import.meta.url));
export const LIBVIRT_URI = process.env.LIBVIRT_URI ?? 'qemu:///system';

export interface ChildHandle {
  role: string;
  pid: number;
  stats(): Promise<ChildStats>;
  /** CPU milliseconds the process used over `ms` of wall time, and its stats at the end. */
  idleCpu(ms: number): Promise<{ cpuMs: number; stats: ChildStats }>;
  stop(): Promise<void>;
}

/**
 * Starts a child; retried a few times, because the working tree is shared with other engineers and a
 * module they are editing may fail to load for a moment.
 */
/** `env`: variables added to the child's environment (an A/B of a process setting such as MALLOC_ARENA_MAX). */
export async function startChild(config: ChildConfig, logFile: string, env: Record<string, string> = {}): Promise<ChildHandle> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startChildOnce(config, logFile, env);
    } catch (err) {
      if (attempt >= 4) throw err;
      process.stdout.write(`  ! ${(err as Error).message}; retrying in 15 s\n`);
      await sleep(15_000);
    }
  }
}

async function startChildOnce(config: ChildConfig, logFile: string, extraEnv: Record<string, string>): Promise<ChildHandle> {
  const out = fs.openSync(logFile, 'a');
  const child: ChildProcess = fork(childScript, [], {
    // BENCH_CPU_PROF=<dir>: a V8 CPU profile of each child, written when it stops (for finding costs).
    execArgv: ['--import', 'tsx', ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [])],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16', ...extraEnv },
    stdio: ['ignore', out, out, 'ipc'],
  });
  fs.closeSync(out);
  let nextId = 1;
  const pending = new Map<number, (m: unknown) => void>();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench child (${config.role}) exited with ${code} before it was ready; see ${logFile}`)));
    child.on('message', (m: { type: string; id?: number; pid?: number }) => {
      if (m.type === 'ready') resolve(m.pid!);
      else if (m.id !== undefined) pending.get(m.id)?.(m);
    });
  });
  child.send({ type: 'config', config } satisfies ParentMessage);
  const pid = await ready;
  const ask = <T>(msg: ParentMessage & { id: number }): Promise<T> =>
    new Promise((resolve) => {
      pending.set(msg.id, (m) => {
        pending.delete(msg.id);
        resolve(m as T);
      });
      child.send(msg);
    });
  return {
    role: config.role,
    pid,
    stats: async () => (await ask<{ stats: ChildStats }>({ type: 'stats', id: nextId++ })).stats,
    idleCpu: (ms) => ask<{ cpuMs: number; stats: ChildStats }>({ type: 'idle-cpu', id: nextId++, ms }),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.send({ type: 'stop' } satisfies ParentMessage);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface BenchStack {
  id: string;
  databaseKind: 'embedded' | 'DATABASE_URL';
  databaseUrl: string;
  temporal: TemporalDevServer;
  metricsUrl: string | undefined;
  db: Database;
  client: Client;
  libvirt: LibvirtConnection;
  blockStorage: LocalVolumeService;
  service: TetherService;
  host: string;
  controlTaskQueue: string;
  volumeDir: string;
  logDir: string;
  control: ChildHandle;
  agent: ChildHandle;
  controlVariant: ControlVariant;
  agentVariant: AgentVariant;
  /** Instances with running (then paused) domains, in creation order. */
  instances: Instance[];
  volumes: Volume[];
  restartControl(variant: ControlVariant): Promise<void>;
  /** A second control-plane worker (a variant) on its own task queue, and a service that starts workflows there. */
  startVariantControl(variant: ControlVariant, taskQueue: string, blockStorage?: BlockStorage): Promise<{ child: ChildHandle; service: TetherService }>;
  restartAgent(variant: AgentVariant): Promise<void>;
  childConfig(role: 'agent', host: string, variant: AgentVariant): ChildConfig;
  /** Makes sure `n` instances exist (domains defined, started and paused unless runningDomains). */
  ensureInstances(n: number): Promise<Instance[]>;
  ensureVolumes(n: number): Promise<Volume[]>;
  procGroups(extra?: ProcGroup[]): ProcGroup[];
  cleanup(): Promise<void>;
}

export interface BenchStackOptions {
  /** Keep the QEMU guests running instead of pausing them (each TCG guest then burns ~2% of a core). */
  runningDomains: boolean;
  log: (line: string) => void;
}

export async function startBenchStack(options: BenchStackOptions): Promise<BenchStack> {
  const say = options.log;
  const config = loadConfig();
  const id = randomBytes(4).toString('hex');
  const logDir = path.join(projectRoot, 'bench-results', 'logs', id);
  await fsp.mkdir(logDir, { recursive: true });
  const cleanups: Array<{ name: string; fn: () => Promise<unknown> }> = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) {
      await c.fn().catch((err: unknown) => say(`cleanup ${c.name}: ${(err as Error).message}`));
    }
    cleanups.length = 0;
  };

  try {
    // libvirt
    const libvirtd: LibvirtdHandle = await ensureLibvirtd(LIBVIRT_URI);
    if (libvirtd.startedByUs) cleanups.push({ name: 'libvirtd', fn: () => libvirtd.stop() });

    // PostgreSQL
    let adminUrl: string;
    let databaseKind: BenchStack['databaseKind'];
    let postgresPid: () => number | undefined;
    if (process.env.DATABASE_URL) {
      databaseKind = 'DATABASE_URL';
      adminUrl = process.env.DATABASE_URL;
      const u = new URL(adminUrl);
      const local = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(u.hostname);
      const port = Number(u.port || 5432);
      postgresPid = () => (local ? pidListeningOn(port) : undefined);
    } else {
      databaseKind = 'embedded';
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-bench-pg-'));
      fs.chmodSync(dir, 0o755); // PostgreSQL runs as `postgres` when we are root
      cleanups.push({ name: 'embedded PostgreSQL folder', fn: () => fsp.rm(dir, { recursive: true, force: true }) });
      const t0 = performance.now();
      const embedded = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port: await findFreePort(), database: 'tether' });
      // embedded-postgres hooks SIGINT/SIGTERM to stop itself and exit; our own handler cleans up everything.
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal);
      cleanups.push({ name: 'embedded PostgreSQL', fn: () => embedded.stop() });
      const u = new URL(embedded.url);
      u.pathname = '/postgres';
      adminUrl = u.toString();
      postgresPid = () => pidFromFile(path.join(dir, 'data', 'postmaster.pid'));
      say(`  embedded PostgreSQL ready in ${Math.round(performance.now() - t0)} ms`);
    }
    const dbName = `tether_bench_${id}`;
    {
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${dbName}`);
      await admin.end();
    }
    cleanups.push({
      name: `database ${dbName}`,
      fn: async () => {
        const admin = new pg.Client({ connectionString: adminUrl });
        await admin.connect();
        try {
          await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        } finally {
          await admin.end();
        }
      },
    });
    const dbUrl = new URL(adminUrl);
    dbUrl.pathname = `/${dbName}`;
    const databaseUrl = dbUrl.toString();
    await migrate(databaseUrl);
    const db = createDatabase(databaseUrl, { max: 20, applicationName: 'tether-bench-driver' });
    cleanups.push({ name: 'database pool', fn: () => db.end() });

    // Temporal dev server (in memory); its metrics port is printed in its log.
    const temporalLog = path.join(logDir, 'temporal.log');
    const temporal = await startTemporalDevServer({ binary: config.temporalBinary, port: await findFreePort(), logFile: temporalLog });
    cleanups.push({ name: 'Temporal dev server', fn: () => temporal.stop() });
    let metricsUrl: string | undefined;
    for (let i = 0; i < 100 && !metricsUrl; i++) {
      metricsUrl = /Metrics:\s+(http:\/\/\S+\/metrics)/.exec(await fsp.readFile(temporalLog, 'utf8'))?.[1]?.replace('localhost', '127.0.0.1');
      if (!metricsUrl) await sleep(50);
    }
    const clientConnection = await Connection.connect({ address: temporal.address });
    cleanups.push({ name: 'Temporal client', fn: () => clientConnection.close() });
    const client = new Client({ connection: clientConnection, namespace: 'default' });

    const volumeDir = `/var/lib/libvirt/images/tether-bench-${id}`;
    await fsp.mkdir(volumeDir, { recursive: true });
    cleanups.push({ name: 'volume folder', fn: () => fsp.rm(volumeDir, { recursive: true, force: true }) });
    const blockStorage = new LocalVolumeService(db, { volumeDir, availabilityZone: 'nova' });
    const libvirt = await LibvirtConnection.open(LIBVIRT_URI, { poolSize: 8 });

    const host = `bench-${id}`;
    const controlTaskQueue = `bench-control-${id}`;
    const service = new TetherService({
      db,
      client,
      blockStorage,
      config: { controlTaskQueue, computeHost: host, availabilityZone: 'nova', defaultDiskBus: 'scsi' },
    });

    const controlConfig = (variant: ControlVariant, taskQueue = controlTaskQueue): ChildConfig => ({
      role: 'control',
      temporalAddress: temporal.address,
      namespace: 'default',
      databaseUrl,
      volumeDir,
      taskQueue,
      variant,
    });
    const agentConfig = (agentHost: string, variant: AgentVariant): ChildConfig => ({
      role: 'agent',
      temporalAddress: temporal.address,
      namespace: 'default',
      databaseUrl,
      host: agentHost,
      libvirtUri: LIBVIRT_URI,
      variant,
    });
    const shipped: ControlVariant = { workflows: 'shipped' };
    const [control, agent] = await Promise.all([
      startChild(controlConfig(shipped), path.join(logDir, 'control.log')),
      startChild(agentConfig(host, { hostActivities: 'shipped' }), path.join(logDir, 'agent.log')),
    ]);

    const stack: BenchStack = {
      id,
      databaseKind,
      databaseUrl,
      temporal,
      metricsUrl,
      db,
      client,
      libvirt,
      blockStorage,
      service,
      host,
      controlTaskQueue,
      volumeDir,
      logDir,
      control,
      agent,
      controlVariant: shipped,
      agentVariant: { hostActivities: 'shipped' },
      instances: [],
      volumes: [],
      async restartControl(variant) {
        await stack.control.stop();
        stack.control = await startChild(controlConfig(variant), path.join(logDir, 'control.log'));
        stack.controlVariant = variant;
      },
      async restartAgent(variant) {
        await stack.agent.stop();
        stack.agent = await startChild(agentConfig(host, variant), path.join(logDir, 'agent.log'));
        stack.agentVariant = variant;
      },
      childConfig: (_role, agentHost, variant) => agentConfig(agentHost, variant),
      async startVariantControl(variant, taskQueue, variantBlockStorage = blockStorage) {
        const child = await startChild(controlConfig(variant, taskQueue), path.join(logDir, `control-${taskQueue}.log`));
        const variantService = new TetherService({
          db,
          client,
          blockStorage: variantBlockStorage,
          config: { controlTaskQueue: taskQueue, computeHost: host, availabilityZone: 'nova', defaultDiskBus: 'scsi' },
        });
        return { child, service: variantService };
      },
      async ensureInstances(n) {
        const missing = n - stack.instances.length;
        let next = stack.instances.length;
        const created: Instance[] = [];
        const workers = Array.from({ length: Math.min(8, Math.max(missing, 0)) }, async () => {
          while (next < n) {
            const i = next++;
            const { instance, handle } = await service.createServer({ name: `bench-${id}-${i}` });
            await handle.result();
            if (!options.runningDomains) await run('virsh', ['-c', LIBVIRT_URI, 'suspend', instance.uuid]);
            created.push(instance);
          }
        });
        await Promise.all(workers);
        const all = await listInstances(db, { host });
        const byUuid = new Map(all.map((i) => [i.uuid, i]));
        stack.instances.push(...created.map((c) => byUuid.get(c.uuid)!).filter(Boolean));
        return stack.instances.slice(0, n);
      },
      async ensureVolumes(n) {
        while (stack.volumes.length < n) {
          stack.volumes.push(await service.createVolume({ name: `bench-v${stack.volumes.length}`, size: 1 }));
        }
        return stack.volumes.slice(0, n);
      },
      procGroups(extra = []) {
        const qemuPids = () =>
          stack.instances.map((i) => pidFromFile(`/run/libvirt/qemu/${i.libvirtDomain}.pid`)).filter((p): p is number => p !== undefined);
        return [
          { name: 'Temporal dev server', pids: () => [temporal.pid] },
          { name: `PostgreSQL (${databaseKind === 'embedded' ? 'embedded' : 'DATABASE_URL, whole server'})`, pids: () => { const p = postgresPid(); return p ? withDescendants(p) : []; } },
          { name: 'libvirtd', pids: () => { const p = pidFromFile('/run/libvirtd.pid'); return p ? [p] : []; } },
          { name: 'virtlogd', pids: () => { const p = pidFromFile('/run/virtlogd.pid'); return p ? [p] : []; } },
          { name: 'QEMU domains', pids: qemuPids },
          { name: 'node: bench driver (service + load)', pids: () => [process.pid] },
          { name: 'node: control-plane worker', pids: () => [stack.control.pid] },
          { name: 'node: compute agent', pids: () => [stack.agent.pid] },
          ...extra,
        ];
      },
      cleanup,
    };

    cleanups.push({ name: 'libvirt connection', fn: () => libvirt.close() });
    cleanups.push({
      name: 'domains',
      fn: async () => {
        // libvirtd is shared: another user may have restarted it meanwhile; make sure it answers
        await ensureLibvirtd(LIBVIRT_URI).catch(() => undefined);
        const left: string[] = [];
        for (const instance of await listInstances(db).catch(() => [] as Instance[])) {
          if (!instance.libvirtDomain?.startsWith('tether-')) continue;
          try {
            await libvirt.destroyDomain(instance.uuid);
            await libvirt.undefineDomain(instance.uuid);
          } catch {
            // the connection may have died with the daemon: virsh, once more
            await run('virsh', ['-c', LIBVIRT_URI, 'destroy', instance.uuid]).catch(() => undefined);
            await run('virsh', ['-c', LIBVIRT_URI, 'undefine', instance.uuid]).catch(() => left.push(instance.libvirtDomain!));
          }
        }
        if (left.length) say(`cleanup: could not undefine ${left.join(', ')}`);
      },
    });
    cleanups.push({ name: 'compute agent', fn: () => stack.agent.stop() });
    cleanups.push({ name: 'control-plane worker', fn: () => stack.control.stop() });
    return stack;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Waits until `check` is true (polling every `everyMs`), or throws after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
