/**
 * The compute agent: one process per compute host. It holds the connection to the host's libvirt
 * daemon and serves
 *   - `host-<name>`: domain life (spawn, destroy), and
 *   - `instance-<uuid>` for every instance on this host: the host steps of attach/detach, one
 *     activity at a time, which serializes them per instance.
 * It starts and stops those per-instance workers as instances arrive on or leave the host (a
 * PostgreSQL notification wakes it; a periodic resync catches anything missed). Each resync is also
 * the host's heartbeat (Nova's compute service state). A host fenced by a force detach serves no
 * instance queue until the agent has cleaned up (activities/host/fence-cleanup.ts) and cleared the
 * fence: at start, and whenever it finds the fence later (a process that was stopped and continues).
 * Each resync also records as stopped the instances whose domain stopped running behind tether's back
 * (src/host/power-state-sync.ts, Nova's power-state sync).
 * Run alone with `node --import tsx workers/compute-agent.ts`; `npm start` runs one named compute-1.
 */
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Worker, type NativeConnection, type RuntimeOptions } from '@temporalio/worker';
import type { Logger } from 'pino';
import { createDomainActivities, createHostActivities, createRepairHostActivities, type DetachDiskOptions, type VolumeEncryptionSource } from '../activities/host.ts';
import type { Database } from '../src/db/database.ts';
import { loadDomainTemplate } from '../src/config.ts';
import type { DomainTemplate } from '../src/libvirt/domain-xml.ts';
import { listInstances } from '../src/db/instances.ts';
import { clearFence, touchHost } from '../src/db/compute-hosts.ts';
import type { HostFence } from '../src/domain/compute-hosts.ts';
import { cleanUpFencedHost } from '../activities/host/fence-cleanup.ts';
import { syncPowerStates } from '../src/host/power-state-sync.ts';
import { hostTaskQueue, instanceTaskQueue } from '../src/domain/task-queues.ts';
import { FaultInjector } from '../faults/injector.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { activityMetricsInterceptor } from '../src/metrics/worker-options.ts';
import { startMetricsFromEnv } from '../src/metrics/http.ts';
import { installSdkMetrics } from '../src/metrics/sdk-metrics.ts';
import { registerComputeAgentMetrics } from '../src/metrics/compute-agent-metrics.ts';
import { codecDataConverter } from '../src/security/codec-config.ts';
import { tracingActivityInterceptors } from '../src/tracing/temporal-tracing.ts';
import { tracedLibvirt } from '../src/tracing/traced-libvirt.ts';
import { tracedBlockStorage } from '../src/tracing/traced-block-storage.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { releaseFreedMemory } from '../src/process/release-freed-memory.ts';

/**
 * The SDK runtime of a compute agent's process. Worker heartbeats off: SDK Core gives every Worker's
 * heartbeat a thread of its own that samples the host's CPU and memory (`temporal-real-sysinfo`), and
 * this process runs a Worker per instance queue — 1000 instances, 1000 threads and 1000 heartbeat
 * RPCs a minute for nothing tether reads (the agent's health is its own heartbeat, touchHost, and
 * the queues' pollers). Measured with 1000 queues: threads 1014 → 14.
 */
export const AGENT_RUNTIME_OPTIONS: RuntimeOptions = { workerHeartbeatInterval: 0 };

export interface ComputeAgentOptions {
  connection: NativeConnection;
  namespace: string;
  host: string;
  db: Database;
  databaseUrl: string;
  libvirt: LibvirtConnection;
  log?: Pick<Logger, 'info' | 'warn' | 'error'>;
  faults?: FaultInjector;
  detach?: DetachDiskOptions;
  resyncIntervalMs?: number;
  /** The block storage, for encrypted volumes' metadata and keys (fetched on this host only). */
  volumeEncryption?: VolumeEncryptionSource;
  /** What every domain this host defines gets (TETHER_DOMAIN_*): the OS-less domain when absent. */
  domainTemplate?: DomainTemplate;
  /**
   * How long a guest gets to power off when a stop or a soft reboot asks it (TETHER_SHUTDOWN_TIMEOUT,
   * Nova's shutdown_timeout): 60 s for a booted guest, 0 for the OS-less domain (nothing answers ACPI).
   */
  cleanShutdownSeconds?: number;
  /**
   * Discovery (TETHER_DISCOVER_DOMAINS=1): called at each resync for every libvirt domain of this
   * host that tether does not know (no instance has its uuid), once per domain and process — the
   * agent's process imports it (`tether server import`), only those whose name matches
   * TETHER_DISCOVER_NAMES (a regular expression) when that is set.
   */
  discover?: (domain: { uuid: string; name: string }) => Promise<void>;
  /** Give the C heap's free pages back at every sync (default true; src/process/release-freed-memory.ts: under 1 ms when little is free). */
  releaseMemory?: boolean;
  /** TETHER_DISCOVER_NAMES: only domains whose name matches are handed to `discover`; the others stay unknown. */
  discoverNames?: RegExp;
}

interface RunningWorker {
  worker: Worker;
  done: Promise<void>;
}

export class ComputeAgent {
  private readonly instanceWorkers = new Map<string, RunningWorker>();
  private hostWorker: RunningWorker | undefined;
  private listener: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> = Promise.resolve();
  /** A sync asked for but not started yet: later requests join it (a burst of NOTIFYs = one sync). */
  private queuedSync: Promise<void> | undefined;
  private stopped = false;
  /** Domains discovery handed over already (each once per process). */
  private readonly discovered = new Set<string>();
  private readonly hostActivities;
  private readonly log;

  constructor(private readonly o: ComputeAgentOptions) {
    this.log = o.log ?? { info: () => undefined, warn: () => undefined, error: () => undefined };
    this.hostActivities = createHostActivities({
      db: o.db,
      libvirt: tracedLibvirt(o.libvirt),
      host: o.host,
      faults: o.faults ?? new FaultInjector(),
      ...(o.detach ? { detach: o.detach } : {}),
      ...(o.volumeEncryption ? { volumeEncryption: tracedBlockStorage(o.volumeEncryption) } : {}),
      cleanShutdownSeconds: o.cleanShutdownSeconds ?? (o.domainTemplate?.boot ? 60 : 0),
    });
  }

  /** The worker identity in history names the compute host that ran each step. */
  private identity(): string {
    return `compute-agent@${this.o.host} (pid ${process.pid})`;
  }

  /** Task queues served right now (the host queue first). */
  servedQueues(): string[] {
    return [hostTaskQueue(this.o.host), ...[...this.instanceWorkers.keys()].map(instanceTaskQueue)];
  }

  async start(): Promise<void> {
    // A fenced host cleans up before it serves anything: the first sync does it.
    await this.listen();
    await this.sync();
    const worker = await Worker.create({
      connection: this.o.connection,
      namespace: this.o.namespace,
      taskQueue: hostTaskQueue(this.o.host),
      identity: this.identity(),
      dataConverter: codecDataConverter(),
      interceptors: { activity: [...tracingActivityInterceptors(), activityMetricsInterceptor] },
      activities: {
        ...createDomainActivities({
          libvirt: tracedLibvirt(this.o.libvirt),
          db: this.o.db,
          host: this.o.host,
          faults: this.o.faults ?? new FaultInjector(),
          ...(this.o.volumeEncryption ? { volumeEncryption: tracedBlockStorage(this.o.volumeEncryption) } : {}),
          ...(this.o.domainTemplate ? { template: this.o.domainTemplate } : {}),
        }),
        ...createRepairHostActivities({ libvirt: tracedLibvirt(this.o.libvirt), db: this.o.db, host: this.o.host }),
      },
      maxConcurrentActivityTaskExecutions: 4,
    });
    this.hostWorker = { worker, done: this.runWorker(worker, hostTaskQueue(this.o.host)) };
    this.timer = setInterval(() => void this.sync(), this.o.resyncIntervalMs ?? 10_000);
  }

  private runWorker(worker: Worker, queue: string): Promise<void> {
    return worker.run().catch((err: unknown) => this.log.error({ err, queue }, 'worker stopped with an error'));
  }

  private async listen(): Promise<void> {
    try {
      const client = new pg.Client({ connectionString: this.o.databaseUrl, application_name: `tether-agent-${this.o.host}` });
      client.on('error', () => {
        this.listener = undefined;
      });
      client.on('notification', (n) => {
        if (n.payload === this.o.host) void this.sync();
      });
      await client.connect();
      await client.query('LISTEN tether_instances');
      await client.query('LISTEN tether_fences');
      this.listener = client;
    } catch (err) {
      this.log.warn({ err }, 'cannot listen for instance changes; relying on periodic resync');
    }
  }

  /** Make the set of per-instance workers match the instances on this host. */
  sync(): Promise<void> {
    if (this.queuedSync) return this.queuedSync;
    const next = this.syncing
      .then(() => {
        // From here on, a change must be seen by a sync that starts later: let the next request queue one.
        this.queuedSync = undefined;
        return this.syncOnce();
      })
      .catch((err: unknown) => this.log.warn({ err }, 'instance sync failed'));
    this.queuedSync = next;
    this.syncing = next;
    return next;
  }

  private async syncOnce(): Promise<void> {
    if (this.stopped) return;
    if (!this.listener) await this.listen();
    const { fence } = await touchHost(this.o.db, this.o.host);
    if (fence && !(await this.cleanUpAfterFence(fence))) return;
    const wanted = new Set((await listInstances(this.o.db, { host: this.o.host })).map((i) => i.uuid));
    const missing = [...wanted].filter((uuid) => !this.instanceWorkers.has(uuid));
    // Worker.create waits for a round trip to the server: create many at once when many instances
    // arrive together (an agent starting on a full host, a bulk import), a bounded number at a time.
    await forEachConcurrently(missing, WORKER_CREATE_CONCURRENCY, (uuid) => this.serveInstance(uuid));
    // not awaited: an import runs its first step on this host's queue, which the first sync precedes
    if (this.o.discover) void this.discoverDomains(this.o.discover).catch((err: unknown) => this.log.warn({ err }, 'domain discovery failed'));
    await this.syncPowerStates();
    for (const [uuid, running] of this.instanceWorkers) {
      if (wanted.has(uuid)) continue;
      this.instanceWorkers.delete(uuid);
      running.worker.shutdown();
      this.log.info({ queue: instanceTaskQueue(uuid) }, 'instance left the host; queue released');
    }
    // every sync (each resync interval): what a burst of worker starts freed comes back a sync later
    if (this.o.releaseMemory !== false) releaseFreedMemory();
  }

  /**
   * The host is fenced: every instance queue stops (steps in flight finish or are cancelled first),
   * the disks of volumes released meanwhile go, then the fence is cleared — unless a newer fence came
   * meanwhile, whose cleanup the next sync does. Returns whether the host may serve again.
   */
  private async cleanUpAfterFence(fence: HostFence): Promise<boolean> {
    this.log.warn({ host: this.o.host, fence }, 'host is fenced: stopping every instance queue to clean up before serving again');
    const running = [...this.instanceWorkers.values()];
    this.instanceWorkers.clear();
    for (const r of running) if (r.worker.getState() === 'RUNNING') r.worker.shutdown();
    await Promise.all(running.map((r) => r.done));
    const report = await cleanUpFencedHost({
      db: this.o.db,
      libvirt: this.o.libvirt,
      host: this.o.host,
      unplug: { waitMs: this.o.detach?.unplugWaitMs ?? 5_000, requests: this.o.detach?.unplugRequests ?? 3 },
    });
    if (report.failed.length > 0) {
      this.log.error({ host: this.o.host, removed: report.removed, failed: report.failed }, 'fence cleanup incomplete: the host stays fenced and serves no instance queue; retried at the next resync');
      return false;
    }
    const cleared = await clearFence(this.o.db, this.o.host, fence.epoch);
    this.log.warn({ host: this.o.host, removed: report.removed, cleared }, cleared ? 'fence cleanup done: serving again' : 'fence cleanup done, but a newer fence came meanwhile');
    return cleared;
  }

  /** Domains that stopped behind tether's back (QEMU killed, guest powered off) are recorded as stopped (src/host/power-state-sync.ts). */
  private async syncPowerStates(): Promise<void> {
    try {
      for (const c of await syncPowerStates({ db: this.o.db, libvirt: this.o.libvirt, host: this.o.host })) {
        this.log.warn({ instanceUuid: c.uuid, was: c.was, domainState: c.domainState }, 'domain is not running: instance recorded as stopped');
      }
    } catch (err) {
      this.log.warn({ err }, 'power-state sync failed; tried again at the next resync');
    }
  }

  /** Hands each domain of this host that no instance has (by uuid) to `discover`, once; a failure is logged and not retried by this process. */
  private async discoverDomains(discover: NonNullable<ComputeAgentOptions['discover']>): Promise<void> {
    const known = new Set((await listInstances(this.o.db)).map((i) => i.uuid));
    for (const domain of await this.o.libvirt.listDomains()) {
      if (known.has(domain.uuid) || this.discovered.has(domain.uuid)) continue;
      if (this.o.discoverNames && !this.o.discoverNames.test(domain.name)) continue;
      this.discovered.add(domain.uuid);
      if (this.stopped) return;
      try {
        await discover({ uuid: domain.uuid, name: domain.name });
        this.log.info({ domain: domain.name, uuid: domain.uuid }, 'discovered a domain tether did not know: imported');
      } catch (err) {
        this.log.warn({ err, domain: domain.name, uuid: domain.uuid }, 'discovered a domain tether did not know: its import failed');
      }
    }
  }

  private async serveInstance(uuid: string): Promise<void> {
    if (this.stopped) return;
    const queue = instanceTaskQueue(uuid);
    const worker = await Worker.create({
      connection: this.o.connection,
      namespace: this.o.namespace,
      taskQueue: queue,
      identity: this.identity(),
      dataConverter: codecDataConverter(),
      interceptors: { activity: [...tracingActivityInterceptors(), activityMetricsInterceptor] },
      activities: this.hostActivities,
      // One host step at a time per instance: Nova's synchronized(instance.uuid), but durable.
      maxConcurrentActivityTaskExecutions: 1,
      maxConcurrentActivityTaskPolls: 1,
    });
    const running: RunningWorker = {
      worker,
      done: this.runWorker(worker, queue).finally(() => {
        if (this.instanceWorkers.get(uuid) === running) this.instanceWorkers.delete(uuid);
      }),
    };
    this.instanceWorkers.set(uuid, running);
    this.log.info({ queue }, 'serving instance queue');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.syncing;
    await this.listener?.end().catch(() => undefined);
    const all = [...this.instanceWorkers.values(), ...(this.hostWorker ? [this.hostWorker] : [])];
    this.instanceWorkers.clear();
    for (const r of all) if (r.worker.getState() === 'RUNNING') r.worker.shutdown();
    await Promise.all(all.map((r) => r.done));
  }
}

/** How many per-instance workers a sync creates at once. */
const WORKER_CREATE_CONCURRENCY = 16;

async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

async function main(): Promise<void> {
  const { runProcess } = await import('./process.ts');
  await runProcess('compute-agent', async (ctx) => {
    installSdkMetrics(ctx.log, process.env, AGENT_RUNTIME_OPTIONS);
    const metrics = await startMetricsFromEnv(ctx.log);
    if (metrics) ctx.onShutdown(() => metrics.close());
    const libvirt = await ctx.waitFor('libvirt', () => LibvirtConnection.open(ctx.config.libvirtUri));
    const discoverNames = process.env.TETHER_DISCOVER_NAMES ? new RegExp(process.env.TETHER_DISCOVER_NAMES) : undefined;
    const agent = new ComputeAgent({
      connection: await ctx.workerConnection(),
      namespace: ctx.config.temporalNamespace,
      host: ctx.config.computeHost,
      db: ctx.db(),
      databaseUrl: ctx.config.databaseUrl,
      libvirt,
      log: ctx.log,
      faults: FaultInjector.fromEnv(),
      volumeEncryption: ctx.blockStorage(),
      domainTemplate: loadDomainTemplate(),
      ...(process.env.TETHER_SHUTDOWN_TIMEOUT ? { cleanShutdownSeconds: Number(process.env.TETHER_SHUTDOWN_TIMEOUT) } : {}),
      ...(process.env.TETHER_DISCOVER_DOMAINS === '1'
        ? {
            ...(discoverNames ? { discoverNames } : {}),
            discover: async (domain: { uuid: string; name: string }) => {
              const service = new TetherService({ db: ctx.db(), client: await ctx.client(), blockStorage: ctx.blockStorage(), config: ctx.config });
              await service.importServer({ domain: domain.uuid, host: ctx.config.computeHost });
            },
          }
        : {}),
    });
    let stopped!: () => void;
    const done = new Promise<void>((resolve) => (stopped = resolve));
    ctx.onShutdown(async () => {
      await agent.stop();
      await libvirt.close();
      stopped();
    });
    await agent.start();
    const unregisterMetrics = registerComputeAgentMetrics({
      host: ctx.config.computeHost,
      servedQueues: () => agent.servedQueues(),
      workflowService: (await ctx.workerConnection()).workflowService,
      namespace: ctx.config.temporalNamespace,
    });
    ctx.onShutdown(async () => unregisterMetrics());
    ctx.log.info({ host: ctx.config.computeHost, libvirt: ctx.config.libvirtUri, queues: agent.servedQueues().length }, 'compute agent ready');
    await done;
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
