/**
 * The chaos runner's own tether stack, every part a separate OS process it can SIGKILL, SIGSTOP and
 * restart:
 *   - the Temporal dev server with a persistent SQLite file (a killed server restarts with its workflows),
 *     or with `temporalCluster` a cluster of two nodes on the stack's PostgreSQL with mTLS
 *     (stack/temporal-cluster.ts: nodes `temporal-1`, `temporal-2`; every tether process and the
 *     runner's own client fail over between the frontends through a FrontendRelay),
 *   - the embedded PostgreSQL (or DATABASE_URL: then PostgreSQL is never killed: it is not ours),
 *   - the control-plane worker, the compute agent and the API server (`node --import tsx workers/<x>.ts`),
 *   - the system libvirtd (qemu:///system; killed by the pid in /run/libvirtd.pid, restarted with `libvirtd -d`).
 * Everything it creates is named after one run id: task queue and compute host `chaos-<id>`, the
 * folder /var/lib/libvirt/images/tether-chaos-<id>/ (reachable by QEMU and by the postgres user), and
 * the domains of its servers, which it removes at the end.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { loadConfig, projectRoot } from '../src/config.ts';
import { createDatabase, type Database } from '../src/db/database.ts';
import { migrate } from '../src/db/migrate.ts';
import { LocalVolumeService } from '../src/blockstorage/local-volume-service.ts';
import type { BlockStorage, VolumeAdmin } from '../src/blockstorage/block-storage.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { TetherService } from '../src/service/tether-service.ts';
import { listInstances } from '../src/db/instances.ts';
import { findFreePort } from '../stack/free-port.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../stack/embedded-postgres.ts';
import { startTemporalDevServer, type TemporalDevServer } from '../stack/temporal-dev-server.ts';
import { clusterClientEnv, clusterTlsConfig, startTemporalCluster, type TemporalCluster } from '../stack/temporal-cluster.ts';
import { FrontendRelay } from '../src/temporal/frontend-relay.ts';
import { ensureLibvirtd, isLibvirtAvailable } from '../stack/libvirtd.ts';
import { TcpProxy } from './tcp-proxy.ts';

export const TARGETS = ['control-plane', 'compute-agent', 'api', 'temporal', 'postgres', 'libvirtd'] as const;
export type Target = (typeof TARGETS)[number];
export type WorkerName = 'control-plane' | 'compute-agent' | 'api' | 'compute-agent-b';

export interface ChaosStackOptions {
  id: string;
  /** Say what happens (one line each). */
  log: (line: string) => void;
  /** Keep the folder (logs, PostgreSQL data, SQLite) after stop. */
  keep?: boolean;
  /**
   * Block storage other than tether's own volume service (a real Cinder: chaos/nova-kills.ts): the
   * environment that selects it in the workers, and the runner's own client of it.
   */
  blockStorage?: { env: Record<string, string>; client: BlockStorage & VolumeAdmin };
  /** A second compute agent, host `chaos-<id>-b` on the same libvirtd (migrate cases): worker `compute-agent-b`. */
  secondAgent?: boolean;
  /** Extra environment of the compute agents (the real guest's domain template: TETHER_DOMAIN_*). */
  agentEnv?: Record<string, string>;
  /**
   * Each of control-plane, compute-agent and api reaches Temporal and PostgreSQL through a TCP proxy
   * of its own on the loopback (chaos/tcp-proxy.ts), which the runner can make drop, hold or slow
   * (chaos/partitions.ts). The runner's own clients connect directly.
   */
  proxies?: boolean;
  /**
   * libfaketime (its path) preloaded into control-plane, compute-agent and api, each reading its
   * wall-clock offset from `<base>/faketime/<worker>` (chaos/clock.ts writes it: "+3600" jumps an
   * hour ahead); CLOCK_MONOTONIC is left alone, as an NTP step leaves it.
   */
  fakeTime?: string;
  /**
   * Temporal as production runs it: two nodes of the server on the stack's PostgreSQL (databases
   * `<tether's>_temporal`, `…_visibility`) with mTLS, instead of the dev server. The target
   * `temporal` is then not offered: the nodes are signalled one by one (signalTemporalNode,
   * restartTemporalNode; chaos/temporal-node-kills.ts). Not with `proxies`.
   */
  temporalCluster?: boolean;
}

export const PROXIED_WORKERS = ['control-plane', 'compute-agent', 'api'] as const;
export const PROXIED_DEPENDENCIES = ['temporal', 'postgres'] as const;
export type ProxiedWorker = (typeof PROXIED_WORKERS)[number];
export type ProxiedDependency = (typeof PROXIED_DEPENDENCIES)[number];

const WORKERS: Record<WorkerName, { script: string; ready: string }> = {
  'control-plane': { script: 'control-plane.ts', ready: '"msg":"control-plane worker polling"' },
  'compute-agent': { script: 'compute-agent.ts', ready: '"msg":"compute agent ready"' },
  api: { script: 'api-server.ts', ready: '"msg":"API listening"' },
  'compute-agent-b': { script: 'compute-agent.ts', ready: '"msg":"compute agent ready"' },
};

const READY_TIMEOUT_MS = 180_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** Direct children of `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return found;
}

/** How many established TCP connections process `pid` has to each of `addresses` (127.0.0.1:port), from /proc. */
async function establishedTo(pid: number, addresses: string[]): Promise<Record<string, number>> {
  const inodes = new Set<string>();
  for (const fd of await fsp.readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const link = await fsp.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const byPort = new Map(addresses.map((a) => [Number(a.slice(a.lastIndexOf(':') + 1)), a]));
  const counts: Record<string, number> = Object.fromEntries(addresses.map((a) => [a, 0]));
  for (const table of ['tcp', 'tcp6']) {
    const text = await fsp.readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (f.length < 10 || f[3] !== '01' || !inodes.has(f[9]!)) continue;
      const address = byPort.get(Number.parseInt(f[2]!.split(':')[1]!, 16));
      if (address) counts[address]!++;
    }
  }
  return counts;
}

/** One tether process (`node --import tsx workers/<script>`), logging to <logs>/<name>.log. */
class WorkerProcess {
  child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private killedByUs = false;
  /** Extra environment of the current incarnation (TETHER_FAULTS, …). */
  extraEnv: Record<string, string> = {};
  /** Unexpected exits (not our kill), each "code N" / "signal S" with a time. */
  readonly crashes: string[] = [];
  private restarting: Promise<void> | undefined;

  constructor(
    readonly name: WorkerName,
    private readonly env: () => NodeJS.ProcessEnv,
    readonly logFile: string,
    private readonly log: (line: string) => void,
  ) {}

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /**
   * Starts the process and waits for its ready line. It restarts by itself if it dies unasked, as
   * `npm start` does (recorded in `crashes`); a start that dies so is waited for through the restarts.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce();
        return;
      } catch (err) {
        if (!this.restarting || attempt >= 5) throw err;
        await this.settled();
        if (this.pid !== undefined) return;
      }
    }
  }

  private async startOnce(): Promise<void> {
    const { script, ready } = WORKERS[this.name];
    const out = fs.createWriteStream(this.logFile, { flags: 'a' });
    out.write(`\n=== ${new Date().toISOString()} start ${this.name}${Object.keys(this.extraEnv).length ? ` ${JSON.stringify(this.extraEnv)}` : ''}\n`);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(projectRoot, 'workers', script)],
      { cwd: projectRoot, env: { ...this.env(), ...this.extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    this.killedByUs = false;
    let readyResolve!: () => void;
    let readyReject!: (err: Error) => void;
    const isReady = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      out.write(`${line}\n`);
      if (line.includes(ready)) readyResolve();
    });
    child.stderr!.on('data', (chunk: Buffer) => out.write(chunk));
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        out.write(`=== ${new Date().toISOString()} exit ${signal ?? `code ${code}`}\n`);
        out.end();
        readyReject(new Error(`${this.name} exited (${signal ?? `code ${code}`}) before it was ready; see ${this.logFile}`));
        resolve();
        if (!this.killedByUs && this.child === child) {
          const what = `${new Date().toISOString()} ${signal ? `signal ${signal}` : `code ${code}`}`;
          this.crashes.push(what);
          this.log(`  ! ${this.name} exited by itself (${what}); restarting it in 1 s — see ${this.logFile}`);
          this.restarting = sleep(1000).then(() => (this.child === child ? this.startOnce() : undefined)).catch((err: unknown) => {
            this.log(`  ! ${this.name} restart failed: ${(err as Error).message}`);
          });
        }
      });
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        isReady,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.name} not ready within ${READY_TIMEOUT_MS / 1000} s; see ${this.logFile}`)), READY_TIMEOUT_MS);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for a self-restart in progress (after an unexpected exit). */
  async settled(): Promise<void> {
    while (this.restarting) {
      const r = this.restarting;
      await r;
      if (this.restarting === r) this.restarting = undefined;
    }
  }

  signal(sig: NodeJS.Signals): void {
    if (this.pid !== undefined) process.kill(this.pid, sig);
  }

  /** Sends `sig` (default SIGKILL) and waits for the exit; no restart follows. */
  async kill(sig: NodeJS.Signals = 'SIGKILL', escalateAfterMs = 15_000): Promise<void> {
    await this.settled();
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.killedByUs = true;
    child.kill(sig);
    const timer = setTimeout(() => child.kill('SIGKILL'), escalateAfterMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export class ChaosStack {
  readonly baseDir: string;
  readonly pauseDir: string;
  readonly logDir: string;
  readonly volumeDir: string;
  readonly controlTaskQueue: string;
  readonly host: string;
  /** The second compute agent's host (only served with `secondAgent`). */
  readonly hostB: string;
  readonly libvirtUri: string;
  readonly config = loadConfig();
  databaseUrl = '';
  temporalAddress = '';
  apiUrl = '';
  /** False when DATABASE_URL names a PostgreSQL we do not own: it is never killed. */
  ownsPostgres = true;
  /** Why libvirtd cannot be killed here, if it cannot. */
  libvirtdUnavailable: string | undefined;

  db!: Database;
  client!: Client;
  libvirt!: LibvirtConnection;
  blockStorage!: BlockStorage & VolumeAdmin;
  service!: TetherService;

  private temporal: TemporalDevServer | undefined;
  /** With `temporalCluster`: the nodes, and the runner's own relay between their frontends. */
  cluster: TemporalCluster | undefined;
  private relay: FrontendRelay | undefined;
  private temporalPort = 0;
  private postgres: EmbeddedPostgres | undefined;
  private pgPort = 0;
  private apiPort = 0;
  private clientConnection: Connection | undefined;
  readonly workers: Record<WorkerName, WorkerProcess>;

  constructor(private readonly o: ChaosStackOptions) {
    this.baseDir = `/var/lib/libvirt/images/tether-chaos-${o.id}`;
    this.pauseDir = path.join(this.baseDir, 'pause');
    this.logDir = path.join(this.baseDir, 'logs');
    this.volumeDir = path.join(this.baseDir, 'volumes');
    this.controlTaskQueue = `chaos-${o.id}`;
    this.host = `chaos-${o.id}`;
    this.hostB = `chaos-${o.id}-b`;
    this.libvirtUri = process.env.LIBVIRT_URI ?? 'qemu:///system';
    const env = (name: ProxiedWorker) => () => this.workerEnv(name);
    const agentEnv = () => ({ ...this.workerEnv('compute-agent'), ...o.agentEnv });
    this.workers = {
      'control-plane': new WorkerProcess('control-plane', env('control-plane'), path.join(this.logDir, 'control-plane.log'), o.log),
      'compute-agent': new WorkerProcess('compute-agent', agentEnv, path.join(this.logDir, 'compute-agent.log'), o.log),
      api: new WorkerProcess('api', env('api'), path.join(this.logDir, 'api-server.log'), o.log),
      'compute-agent-b': new WorkerProcess('compute-agent-b', () => ({ ...this.workerEnv(), ...o.agentEnv, TETHER_COMPUTE_HOST: this.hostB }), path.join(this.logDir, 'compute-agent-b.log'), o.log),
    };
  }

  /** The proxies between each worker and its dependencies (with `proxies`), by `<worker> <dependency>`. */
  readonly proxies = new Map<string, TcpProxy>();

  /** The file holding a worker's clock offset (with `fakeTime`). */
  clockFile(worker: ProxiedWorker): string {
    return path.join(this.baseDir, 'faketime', worker);
  }

  proxy(worker: ProxiedWorker, dependency: ProxiedDependency): TcpProxy | undefined {
    return this.proxies.get(`${worker} ${dependency}`);
  }

  /** The environment of the tether processes (and of the CLI) for this stack; a worker's own proxies when it has them. */
  workerEnv(worker?: ProxiedWorker): NodeJS.ProcessEnv {
    const viaTemporal = worker ? this.proxy(worker, 'temporal') : undefined;
    const viaPostgres = worker ? this.proxy(worker, 'postgres') : undefined;
    let databaseUrl = this.databaseUrl;
    if (viaPostgres) {
      const url = new URL(this.databaseUrl);
      url.port = String(viaPostgres.port);
      databaseUrl = url.toString();
    }
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TETHER_') && !k.startsWith('TEMPORAL_') && k !== 'DATABASE_URL'));
    return {
      ...inherited,
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: viaTemporal ? `127.0.0.1:${viaTemporal.port}` : this.temporalAddress,
      TEMPORAL_NAMESPACE: 'default',
      ...(this.cluster ? clusterClientEnv(this.cluster) : {}),
      TETHER_CONTROL_TASK_QUEUE: this.controlTaskQueue,
      TETHER_COMPUTE_HOST: this.host,
      TETHER_API_HOST: '127.0.0.1',
      TETHER_API_PORT: String(this.apiPort),
      TETHER_DATA_DIR: this.baseDir,
      TETHER_VOLUME_DIR: this.volumeDir,
      ...this.o.blockStorage?.env,
      TETHER_CHAOS_PAUSE: this.pauseDir,
      ...(this.o.fakeTime && worker
        ? {
            LD_PRELOAD: this.o.fakeTime,
            FAKETIME_TIMESTAMP_FILE: this.clockFile(worker),
            FAKETIME_NO_CACHE: '1',
            FAKETIME_DONT_FAKE_MONOTONIC: '1',
          }
        : {}),
      LIBVIRT_URI: this.libvirtUri,
      TETHER_LOG_LEVEL: 'info',
      UV_THREADPOOL_SIZE: '16',
    };
  }

  async start(): Promise<void> {
    const t0 = Date.now();
    for (const dir of [this.baseDir, this.pauseDir, this.logDir, this.volumeDir]) {
      await fsp.mkdir(dir, { recursive: true });
      await fsp.chmod(dir, 0o755);
    }
    // As `npm start` does: start virtlogd + libvirtd when the local system daemon does not answer. They
    // are left running afterwards (the runner kills and restarts libvirtd, so the pids change anyway).
    await ensureLibvirtd(this.libvirtUri);
    if (!/^qemu(\+unix)?:\/\/\/system/.test(this.libvirtUri)) this.libvirtdUnavailable = `LIBVIRT_URI=${this.libvirtUri} is not the local system daemon`;
    else if ((await this.libvirtdPid()) === undefined) this.libvirtdUnavailable = 'no libvirtd pid in /run/libvirtd.pid (a modular daemon, or systemd socket activation?)';

    if (this.o.temporalCluster && this.o.proxies) throw new Error('ChaosStack: temporalCluster and proxies exclude each other');
    this.temporalPort = await findFreePort();
    const external = process.env.DATABASE_URL;
    await Promise.all([
      // the cluster lives on the stack's PostgreSQL: started once that is up
      this.o.temporalCluster ? undefined : this.startTemporal(),
      (async () => {
        if (external) {
          // A database of our own on that server, so nothing of anybody else's is touched.
          this.ownsPostgres = false;
          const admin = createDatabase(external, { max: 1 });
          const name = `tether_chaos_${this.o.id}`;
          await admin.query(`CREATE DATABASE ${name}`).finally(() => admin.end());
          const url = new URL(external);
          url.pathname = `/${name}`;
          this.databaseUrl = url.toString();
        } else {
          this.pgPort = await findFreePort();
          await this.startPostgres();
        }
      })(),
    ]);
    if (this.o.temporalCluster) await this.startCluster();
    else this.temporalAddress = `127.0.0.1:${this.temporalPort}`;
    // Chosen once the dev server is up: it binds further ports of its own (history, matching, worker
    // services) at random, and one of them once took the API's port number chosen before it started.
    this.apiPort = await findFreePort();
    this.apiUrl = `http://127.0.0.1:${this.apiPort}`;
    await migrate(this.databaseUrl);
    const temporalLine = this.cluster
      ? `Temporal cluster ${this.cluster.processes.map((p) => `${p.name} ${p.address}`).join(', ')} (PostgreSQL, mTLS)`
      : `Temporal dev server ${this.temporalAddress} (SQLite ${path.join(this.baseDir, 'temporal', 'temporal.sqlite')})`;
    this.o.log(`  ✓ ${temporalLine}, PostgreSQL ${this.ownsPostgres ? `embedded on port ${this.pgPort}` : 'from DATABASE_URL (not ours: never killed)'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    this.db = createDatabase(this.databaseUrl, { max: 12, applicationName: 'tether-chaos' });
    this.blockStorage = this.o.blockStorage?.client ?? new LocalVolumeService(this.db, { volumeDir: this.volumeDir, availabilityZone: 'nova' });
    if (this.cluster) {
      const tls = clusterTlsConfig(this.cluster.tls);
      this.relay = await FrontendRelay.start({ frontends: this.cluster.frontends, tls, prefer: 0 });
      this.clientConnection = await Connection.connect({ address: this.relay.address, tls });
    } else this.clientConnection = await Connection.connect({ address: this.temporalAddress });
    this.client = new Client({ connection: this.clientConnection, namespace: 'default' });
    this.libvirt = await LibvirtConnection.open(this.libvirtUri);
    this.service = new TetherService({
      db: this.db,
      client: this.client,
      blockStorage: this.blockStorage,
      config: { controlTaskQueue: this.controlTaskQueue, computeHost: this.host, availabilityZone: 'nova', defaultDiskBus: 'scsi' },
    });

    if (this.o.fakeTime) {
      await fsp.mkdir(path.join(this.baseDir, 'faketime'), { recursive: true });
      for (const w of PROXIED_WORKERS) await fsp.writeFile(this.clockFile(w), '+0\n');
    }
    if (this.o.proxies) {
      for (const w of PROXIED_WORKERS) {
        for (const d of PROXIED_DEPENDENCIES) {
          if (d === 'postgres' && !this.ownsPostgres) continue;
          const p = new TcpProxy(`${w} ${d}`, d === 'temporal' ? this.temporalPort : this.pgPort);
          await p.start();
          this.proxies.set(`${w} ${d}`, p);
        }
      }
    }
    const t1 = Date.now();
    await Promise.all(Object.values(this.workers).filter((w) => w.name !== 'compute-agent-b' || this.o.secondAgent).map((w) => w.start()));
    await this.waitHealthy(120_000);
    this.o.log(`  ✓ control-plane worker, compute agent ${this.host} and API ${this.apiUrl} ready (${((Date.now() - t1) / 1000).toFixed(1)} s)`);
  }

  private async startTemporal(): Promise<void> {
    await fsp.mkdir(path.join(this.baseDir, 'temporal'), { recursive: true });
    this.temporal = await startTemporalDevServer({
      binary: this.config.temporalBinary,
      port: this.temporalPort,
      dbFile: path.join(this.baseDir, 'temporal', 'temporal.sqlite'),
      logFile: path.join(this.logDir, 'temporal.log'),
      namespace: 'default',
      readyTimeoutMs: 120_000,
    });
  }

  private async startCluster(): Promise<void> {
    const url = new URL(this.databaseUrl);
    url.pathname = `${url.pathname.replace(/\/$/, '')}_temporal`;
    this.cluster = await startTemporalCluster({ dataDir: path.join(this.baseDir, 'temporal-cluster'), databaseUrl: url.toString(), namespace: 'default', readyTimeoutMs: 180_000 });
    this.temporalAddress = this.cluster.frontends.join(',');
  }

  /** The cluster's nodes (`temporal-1`, …) with pid and frontend; empty on the dev server. */
  temporalNodes(): Array<{ name: string; pid: number; address: string }> {
    return this.cluster?.processes ?? [];
  }

  /**
   * The frontend a worker is connected to. Read two ways: from the OS — the established TCP
   * connections of the worker's process to each frontend port (its relay keeps one health-check
   * connection to every frontend; the one in use also carries the SDK connections, so it has the
   * most) — and from the relay's own account: the frontend its pid picks at start (FrontendRelay's
   * default, process.pid modulo the count), then the last `Temporal: moving from frontend X to Y`
   * it logged since the worker's latest start. The connections decide when one frontend has the
   * most; on a tie the relay's account does.
   */
  async frontendOf(worker: WorkerName): Promise<{ node: string; address: string; connections: Record<string, number>; relaySays: string; decidedBy: 'connections' | 'relay log' }> {
    const w = this.workers[worker];
    const pid = w.pid;
    if (pid === undefined) throw new Error(`${worker} is not running`);
    const nodes = this.temporalNodes();
    if (nodes.length === 0) throw new Error('no Temporal cluster in this stack');
    const frontends = this.cluster!.frontends;
    let relaySays = frontends[pid % frontends.length]!;
    const log = await fsp.readFile(w.logFile, 'utf8').catch(() => '');
    const sinceStart = log.slice(Math.max(0, log.lastIndexOf(` start ${worker}`)));
    for (const m of sinceStart.matchAll(/Temporal: moving from frontend \S+ to (\S+):/g)) relaySays = m[1]!;
    const connections = await establishedTo(pid, nodes.map((n) => n.address));
    const ranked = [...nodes].sort((x, y) => (connections[y.address] ?? 0) - (connections[x.address] ?? 0));
    const [top, next] = ranked;
    const strict = top && (connections[top.address] ?? 0) > 0 && (!next || (connections[next.address] ?? 0) < (connections[top.address] ?? 0));
    const address = strict ? top.address : relaySays;
    const node = nodes.find((n) => n.address === address);
    if (!node) throw new Error(`cannot tell which frontend ${worker} (pid ${pid}) uses: connections ${JSON.stringify(connections)}, relay ${relaySays}`);
    return { node: node.name, address, connections, relaySays, decidedBy: strict ? 'connections' : 'relay log' };
  }

  /** Sends `sig` to a cluster node; SIGKILL waits until it is gone. */
  async signalTemporalNode(name: string, sig: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT'): Promise<void> {
    const cluster = this.cluster;
    if (!cluster) throw new Error('no Temporal cluster in this stack');
    const pid = cluster.processes.find((p) => p.name === name)?.pid;
    cluster.kill(name, sig);
    if (sig === 'SIGKILL' && pid) await waitGone(pid, 15_000);
  }

  /** Starts a killed node again and waits until its frontend serves the namespace. */
  async restartTemporalNode(name: string): Promise<void> {
    await this.cluster!.restart(name);
  }

  private async startPostgres(): Promise<void> {
    // embedded-postgres hooks SIGINT/SIGTERM/SIGHUP to exit the process; the runner handles those itself
    // (stopping the whole stack first), so only the listeners added from here on are removed again.
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
    // A killed postmaster leaves backends that exit on their own within moments; a start before that fails.
    for (let attempt = 1; ; attempt++) {
      try {
        this.postgres = await startEmbeddedPostgres({ dataDir: path.join(this.baseDir, 'pg'), port: this.pgPort, database: 'tether', password: 'tether' });
        break;
      } catch (err) {
        if (attempt >= 5) throw err;
        await sleep(1000 * attempt);
      }
    }
    for (const signal of signals) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
    this.databaseUrl = this.postgres.url;
  }

  private async libvirtdPid(): Promise<number | undefined> {
    try {
      const pid = Number.parseInt((await fsp.readFile('/run/libvirtd.pid', 'utf8')).trim(), 10);
      const comm = (await fsp.readFile(`/proc/${pid}/comm`, 'utf8')).trim();
      return comm === 'libvirtd' && isAlive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Why `target` cannot be killed in this stack (undefined: it can). */
  cannotKill(target: Target | 'compute-agent-b'): string | undefined {
    if (target === 'compute-agent-b' && !this.o.secondAgent) return 'no second compute agent in this stack';
    if (target === 'postgres' && !this.ownsPostgres) return 'PostgreSQL comes from DATABASE_URL and is not ours to kill';
    if (target === 'libvirtd') return this.libvirtdUnavailable;
    if (target === 'temporal' && this.cluster) return 'Temporal is a cluster here: its nodes are the targets (npm run chaos -- --temporal-nodes)';
    return undefined;
  }

  /** SIGKILL of one part; returns once the process is gone. */
  async kill(target: Target | 'compute-agent-b'): Promise<void> {
    switch (target) {
      case 'control-plane':
      case 'compute-agent':
      case 'api':
      case 'compute-agent-b':
        await this.workers[target].kill('SIGKILL');
        return;
      case 'temporal': {
        const server = this.temporal!;
        server.kill('SIGKILL');
        await waitGone(server.pid, 15_000);
        await server.stop();
        return;
      }
      case 'postgres': {
        const pidFile = path.join(this.baseDir, 'pg', 'postmaster.pid');
        const pid = Number.parseInt((await fsp.readFile(pidFile, 'utf8')).split('\n')[0] ?? '', 10);
        const backends = childrenOf(pid);
        process.kill(pid, 'SIGKILL');
        await waitGone(pid, 15_000);
        // Backends notice the postmaster's death and exit; make sure they do before a restart.
        for (const b of backends) if (!(await waitGone(b, 5_000))) process.kill(b, 'SIGKILL');
        for (const b of backends) await waitGone(b, 5_000);
        return;
      }
      case 'libvirtd': {
        const pid = await this.libvirtdPid();
        if (pid === undefined) throw new Error('libvirtd is not running');
        process.kill(pid, 'SIGKILL');
        await waitGone(pid, 15_000);
        return;
      }
    }
  }

  /** Starts a killed part again and waits until it answers. */
  async restart(target: Target | 'compute-agent-b'): Promise<void> {
    switch (target) {
      case 'control-plane':
      case 'compute-agent':
      case 'api':
      case 'compute-agent-b':
        await this.workers[target].start();
        return;
      case 'temporal':
        await this.startTemporal();
        return;
      case 'postgres':
        await this.startPostgres();
        return;
      case 'libvirtd': {
        // Another process (a test's global setup) may have started one meanwhile: then ours fails, which is fine.
        if ((await this.libvirtdPid()) === undefined) {
          await new Promise<void>((resolve) => {
            const child = spawn('libvirtd', ['-d'], { stdio: 'ignore' });
            child.once('exit', () => resolve());
            child.once('error', () => resolve());
          });
        }
        const deadline = Date.now() + 60_000;
        while (!(await isLibvirtAvailable(this.libvirtUri))) {
          if (Date.now() > deadline) throw new Error(`libvirtd did not answer within 60 s after its restart`);
          await sleep(200);
        }
        return;
      }
    }
  }

  /** Restarts a worker with extra environment (e.g. TETHER_FAULTS), or without any when `env` is empty. */
  async restartWorkerWith(name: WorkerName, env: Record<string, string>): Promise<void> {
    const w = this.workers[name];
    await w.kill('SIGTERM');
    w.extraEnv = env;
    await w.start();
  }

  /** Waits for the self-restarts of workers that died unasked. */
  async settled(): Promise<void> {
    await Promise.all(Object.values(this.workers).map((w) => w.settled()));
  }

  /** GET /healthz answers 200 (database, Temporal, control-plane and compute-agent pollers). */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      try {
        const res = await fetch(`${this.apiUrl}/healthz`, { signal: AbortSignal.timeout(5_000) });
        if (res.ok) return;
        last = `${res.status} ${await res.text()}`;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(250);
    }
    throw new Error(`${this.apiUrl}/healthz did not answer 200 within ${timeoutMs / 1000} s (last: ${last})`);
  }

  /** Every unexpected exit of a worker so far. */
  crashes(): string[] {
    return Object.values(this.workers).flatMap((w) => w.crashes.map((c) => `${w.name}: ${c}`));
  }

  async stop(): Promise<void> {
    const log = this.o.log;
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        log(`  ! stopping: ${what}: ${(err as Error).message}`);
      }
    };
    if (this.db && this.libvirt) {
      await step('removing the domains', async () => {
        for (const i of [...(await listInstances(this.db, { host: this.host })), ...(await listInstances(this.db, { host: this.hostB }))]) {
          await this.libvirt.destroyDomain(i.uuid).catch(() => undefined);
          await this.libvirt.undefineDomain(i.uuid).catch(() => undefined);
        }
      });
    }
    await Promise.all(Object.values(this.workers).map((w) => step(w.name, () => w.kill('SIGTERM', 10_000))));
    await step('libvirt connection', async () => this.libvirt?.close());
    await step('Temporal client', async () => this.clientConnection?.close());
    await step('Temporal relay', async () => this.relay?.close());
    await step('database pool', async () => this.db?.end());
    for (const p of this.proxies.values()) await step(`proxy ${p.name}`, () => p.stop());
    await step('Temporal dev server', async () => this.temporal?.stop());
    await step('Temporal cluster', async () => this.cluster?.stop());
    await step('PostgreSQL', async () => this.postgres?.stop());
    if (!this.ownsPostgres && process.env.DATABASE_URL) {
      await step('chaos database', async () => {
        const admin = createDatabase(process.env.DATABASE_URL!, { max: 1 });
        const names = [`tether_chaos_${this.o.id}`, ...(this.cluster ? [`tether_chaos_${this.o.id}_temporal`, `tether_chaos_${this.o.id}_temporal_visibility`] : [])];
        try {
          for (const name of names) await admin.query(`DROP DATABASE IF EXISTS ${name}`);
        } finally {
          await admin.end();
        }
      });
    }
    if (!this.o.keep) await step('folder', () => fsp.rm(this.baseDir, { recursive: true, force: true }));
  }

  /** Runs the tether CLI against this stack: exit code, stdout, stderr (killed after timeoutMs). */
  runCli(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }> {
    return new Promise((resolve) => {
      const child = execFile(process.execPath, [path.join(projectRoot, 'bin', 'tether.js'), ...args], {
        cwd: projectRoot,
        env: this.workerEnv(),
        timeout: timeoutMs,
        maxBuffer: 4 * 1024 * 1024,
      }, (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { killed?: boolean; code?: number | string }) | null;
        resolve({ code: child.exitCode, stdout, stderr, timedOut: Boolean(e?.killed) });
      });
    });
  }
}
