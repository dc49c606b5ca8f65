/**
 * The embedded stack the benchmark runs on, built by stack/builder.ts (as the tests' stack is) but with
 * the control-plane worker and the compute agent in their own Node processes (bench/child.ts, which
 * can run variants of them):
 *   PostgreSQL: DATABASE_URL when set (a fresh database tether_bench_<id> on it), else an embedded
 *     PostgreSQL in a temporary folder;
 *   Temporal: a dev server of our own (in memory, free ports, tether's dynamic config), or with
 *     `temporal: 'cluster'` the two-node cluster on the stack's PostgreSQL with mTLS (stack/temporal-cluster.ts,
 *     as `TETHER_TEMPORAL=cluster npm start` runs it; the children dial it through the product's relay);
 *   libvirt: qemu:///system (started when none answers);
 *   processes: bench/child.ts as control worker and as compute agent; the driver (this process)
 *     holds the service layer (TetherService), as the API server would.
 * Everything it creates (domains, volumes, database, temporary folders) is removed by cleanup().
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { projectRoot } from '../src/config.ts';
import type { Database } from '../src/db/database.ts';
import { listInstances } from '../src/db/instances.ts';
import { LocalVolumeService } from '../src/blockstorage/local-volume-service.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import type { TetherService } from '../src/service/tether-service.ts';
import { ensureLibvirtd } from '../stack/libvirtd.ts';
import { buildStack } from '../stack/builder.ts';
import type { Instance, Volume } from '../src/domain/types.ts';
import type { AgentVariant, ChildConfig, ChildStats, ControlVariant } from './child.ts';
import { pidFromFile, pidListeningOn, withDescendants, type ProcGroup } from './procs.ts';
import { forkMeasuredChild } from './measured-child.ts';

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
  const child = await forkMeasuredChild<ChildConfig, ChildStats>({
    script: childScript,
    // BENCH_CPU_PROF=<dir>: a V8 CPU profile of each child, written when it stops (for finding costs).
    execArgv: ['--import', 'tsx', ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [])],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16', ...extraEnv },
    logFile,
    config,
    label: `bench child (${config.role})`,
    stopTimeoutMs: 30_000,
  });
  return { role: config.role, ...child };
}

export interface BenchStack {
  id: string;
  databaseKind: 'embedded' | 'DATABASE_URL';
  databaseUrl: string;
  /** `address`: the frontend(s) (comma-separated for the cluster); `pid`: the dev server's, or the first node's. */
  temporal: { kind: 'dev' | 'cluster'; address: string; pid: number };
  /** The environment a tether process needs to reach this Temporal (TLS files for the cluster). */
  childEnv: Record<string, string>;
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
  /** The dev server (default) or the two-node mTLS cluster. */
  temporal?: 'dev' | 'cluster';
}

export async function startBenchStack(options: BenchStackOptions): Promise<BenchStack> {
  const say = options.log;
  const id = randomBytes(4).toString('hex');
  const logDir = path.join(projectRoot, 'bench-results', 'logs', id);
  await fsp.mkdir(logDir, { recursive: true });
  const temporalLog = path.join(logDir, 'temporal.log');
  // A database of its own (dropped at the end) on DATABASE_URL, else an embedded PostgreSQL in a
  // temporary folder; a dev server of its own (in memory), its metrics port printed in its log.
  const built = await buildStack({
    log: say,
    libvirtUri: LIBVIRT_URI,
    postgres: process.env.DATABASE_URL ? { url: process.env.DATABASE_URL } : { embedded: {} },
    database: `tether_bench_${id}`,
    temporal: options.temporal === 'cluster' ? { cluster: { dataDir: path.join(logDir, 'temporal-cluster') } } : { dev: { logFile: temporalLog } },
    namespace: 'default',
  });
  const cleanup = async () => built.stop();

  try {
    const databaseKind: BenchStack['databaseKind'] = built.postgres.kind === 'url' ? 'DATABASE_URL' : 'embedded';
    const { databaseUrl } = built;
    const pgPort = built.postgres.port;
    const local = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(new URL(databaseUrl).hostname);
    const postgresPid = databaseKind === 'embedded' ? () => pidFromFile(path.join(built.postgres.dataDir!, 'postmaster.pid')) : () => (local ? pidListeningOn(pgPort) : undefined);
    const { db, client } = await built.connect({ max: 20, applicationName: 'tether-bench-driver', plain: true });
    const temporalKind = options.temporal ?? 'dev';
    const temporalPids = () => built.temporal.processes().map((p) => p.pid);
    const temporal = { kind: temporalKind, address: built.temporal.address, get pid() { return temporalPids()[0]!; } };
    const childEnv = temporalKind === 'cluster' ? built.temporal.env : {};
    let metricsUrl: string | undefined;
    for (let i = 0; i < 100 && !metricsUrl && temporalKind === 'dev'; i++) {
      metricsUrl = /Metrics:\s+(http:\/\/\S+\/metrics)/.exec(await fsp.readFile(temporalLog, 'utf8'))?.[1]?.replace('localhost', '127.0.0.1');
      if (!metricsUrl) await sleep(50);
    }

    const volumeDir = `/var/lib/libvirt/images/tether-bench-${id}`;
    await fsp.mkdir(volumeDir, { recursive: true });
    built.onStop('volume folder', () => fsp.rm(volumeDir, { recursive: true, force: true }));
    const blockStorage = new LocalVolumeService(db, { volumeDir, availabilityZone: 'nova' });
    const libvirt = await LibvirtConnection.open(LIBVIRT_URI, { poolSize: 8 });

    const host = `bench-${id}`;
    const controlTaskQueue = `bench-control-${id}`;
    const service = built.service({ db, client, blockStorage, controlTaskQueue, host });

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
      startChild(controlConfig(shipped), path.join(logDir, 'control.log'), childEnv),
      startChild(agentConfig(host, { hostActivities: 'shipped' }), path.join(logDir, 'agent.log'), childEnv),
    ]);

    const stack: BenchStack = {
      id,
      databaseKind,
      databaseUrl,
      temporal,
      childEnv,
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
        stack.control = await startChild(controlConfig(variant), path.join(logDir, 'control.log'), childEnv);
        stack.controlVariant = variant;
      },
      async restartAgent(variant) {
        await stack.agent.stop();
        stack.agent = await startChild(agentConfig(host, variant), path.join(logDir, 'agent.log'), childEnv);
        stack.agentVariant = variant;
      },
      childConfig: (_role, agentHost, variant) => agentConfig(agentHost, variant),
      async startVariantControl(variant, taskQueue, variantBlockStorage = blockStorage) {
        const child = await startChild(controlConfig(variant, taskQueue), path.join(logDir, `control-${taskQueue}.log`), childEnv);
        const variantService = built.service({ db, client, blockStorage: variantBlockStorage, controlTaskQueue: taskQueue, host });
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
          { name: temporalKind === 'cluster' ? 'Temporal cluster (2 nodes)' : 'Temporal dev server', pids: temporalPids },
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

    built.onStop('libvirt connection', () => libvirt.close());
    built.onStop('domains', async () => {
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
    });
    built.onStop('compute agent', () => stack.agent.stop());
    built.onStop('control-plane worker', () => stack.control.stop());
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
