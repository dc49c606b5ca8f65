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
 * The stack is built by stack/builder.ts (as `npm start`'s, the benchmark's and the tests' are); what
 * is the runner's own here is killing and restarting its parts, the TCP proxies and fake clocks.
 * Everything it creates is named after one run id: task queue and compute host `chaos-<id>`, the
 * folder /var/lib/libvirt/images/tether-chaos-<id>/ (reachable by QEMU and by the postgres user), and
 * the domains of its servers, which it removes at the end.
 */
import { execFile, spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { projectRoot } from '../src/config.ts';
import type { Database } from '../src/db/database.ts';
import { LocalVolumeService } from '../src/blockstorage/local-volume-service.ts';
import { volumeKeyStore } from '../src/blockstorage/index.ts';
import type { BlockStorage, VolumeAdmin } from '../src/blockstorage/block-storage.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import type { TetherService } from '../src/service/tether-service.ts';
import { listInstances } from '../src/db/instances.ts';
import { findFreePort } from '../stack/free-port.ts';
import { buildStack, type ProcessSpec, type Stack } from '../stack/builder.ts';
import type { TetherProcess } from '../stack/tether-process.ts';
import { clusterClientEnv, type TemporalCluster } from '../stack/temporal-cluster.ts';
import { isLibvirtAvailable } from '../stack/libvirtd.ts';
import { childrenOf, isAlive, waitGone } from '../stack/pid.ts';
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
  /**
   * The stack's data folder (PostgreSQL's data, Temporal's SQLite, the volumes, the pause points) on
   * a filesystem of its own of this many MiB: an ext4 image loop-mounted there (chaos/disk-full.ts
   * fills it). The logs then go beside it (`<folder>-logs`), so the runner keeps writing them.
   */
  dataFilesystemMiB?: number;
  /** Extra environment of every tether process (e.g. TETHER_RECONCILE_INTERVAL_SECONDS: chaos/drift.ts). */
  env?: Record<string, string>;
}

export const PROXIED_WORKERS = ['control-plane', 'compute-agent', 'api'] as const;
/** The block storage has a link of its own only when it is a Cinder (`blockStorage` with CINDER_ENDPOINT). */
export const PROXIED_DEPENDENCIES = ['temporal', 'postgres', 'block-storage'] as const;
export type ProxiedWorker = (typeof PROXIED_WORKERS)[number];
export type ProxiedDependency = (typeof PROXIED_DEPENDENCIES)[number];

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

  /** The stack as stack/builder.ts built it (PostgreSQL, Temporal, one stop for everything). */
  private built: Stack | undefined;
  /** With `temporalCluster`: the nodes (the runner's own client reaches them through the builder's relay). */
  cluster: TemporalCluster | undefined;
  private apiPort = 0;
  /** The tether processes, once started (compute-agent-b only with `secondAgent`). */
  workers = {} as Record<WorkerName, TetherProcess>;

  constructor(private readonly o: ChaosStackOptions) {
    this.baseDir = `/var/lib/libvirt/images/tether-chaos-${o.id}`;
    this.pauseDir = path.join(this.baseDir, 'pause');
    this.logDir = o.dataFilesystemMiB ? `${this.baseDir}-logs` : path.join(this.baseDir, 'logs');
    this.volumeDir = path.join(this.baseDir, 'volumes');
    this.controlTaskQueue = `chaos-${o.id}`;
    this.host = `chaos-${o.id}`;
    this.hostB = `chaos-${o.id}-b`;
    this.libvirtUri = process.env.LIBVIRT_URI ?? 'qemu:///system';
  }

  /** The tether processes of this stack: which script, and the environment of each incarnation. */
  private processSpecs(): ProcessSpec[] {
    const spec = (name: WorkerName, script: ProcessSpec['script'], env: () => NodeJS.ProcessEnv, logName: string = name): ProcessSpec => ({ name, script, env, logFile: path.join(this.logDir, `${logName}.log`) });
    return [
      spec('control-plane', 'control-plane', () => this.workerEnv('control-plane')),
      spec('compute-agent', 'compute-agent', () => ({ ...this.workerEnv('compute-agent'), ...this.o.agentEnv })),
      spec('api', 'api-server', () => this.workerEnv('api'), 'api-server'),
      ...(this.o.secondAgent ? [spec('compute-agent-b', 'compute-agent', () => ({ ...this.workerEnv(), ...this.o.agentEnv, TETHER_COMPUTE_HOST: this.hostB }))] : []),
    ];
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
    const viaBlockStorage = worker ? this.proxy(worker, 'block-storage') : undefined;
    let databaseUrl = this.databaseUrl;
    if (viaPostgres) {
      const url = new URL(this.databaseUrl);
      url.port = String(viaPostgres.port);
      databaseUrl = url.toString();
    }
    const blockStorageEnv = { ...this.o.blockStorage?.env };
    if (viaBlockStorage && blockStorageEnv.CINDER_ENDPOINT) {
      const url = new URL(blockStorageEnv.CINDER_ENDPOINT);
      url.hostname = '127.0.0.1';
      url.port = String(viaBlockStorage.port);
      blockStorageEnv.CINDER_ENDPOINT = url.toString().replace(/\/$/, blockStorageEnv.CINDER_ENDPOINT.endsWith('/') ? '/' : '');
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
      ...blockStorageEnv,
      ...this.o.env,
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
    if (this.o.dataFilesystemMiB) await this.mountDataFilesystem(this.o.dataFilesystemMiB);
    for (const dir of [this.baseDir, this.pauseDir, this.logDir, this.volumeDir]) {
      await fsp.mkdir(dir, { recursive: true });
      await fsp.chmod(dir, 0o755);
    }
    if (this.o.temporalCluster && this.o.proxies) throw new Error('ChaosStack: temporalCluster and proxies exclude each other');
    const external = process.env.DATABASE_URL;
    this.built = await buildStack({
      log: this.o.log,
      dataDir: this.baseDir,
      // a data folder on its own filesystem is removed by stop() once unmounted
      removeDataDir: !this.o.keep && !this.o.dataFilesystemMiB,
      // As `npm start` does: start virtlogd + libvirtd when the local system daemon does not answer. They
      // are left running afterwards (the runner kills and restarts libvirtd, so the pids change anyway).
      libvirtUri: this.libvirtUri,
      keepLibvirtd: true,
      // On DATABASE_URL, a database of our own (and the cluster's next to it), so nothing of anybody
      // else's is touched; dropped at the end.
      postgres: external ? { url: external } : { embedded: { dataDir: path.join(this.baseDir, 'pg') } },
      ...(external ? { database: `tether_chaos_${this.o.id}` } : {}),
      temporal: this.o.temporalCluster
        ? { cluster: { dataDir: path.join(this.baseDir, 'temporal-cluster'), readyTimeoutMs: 180_000 } }
        : { dev: { dbFile: path.join(this.baseDir, 'temporal', 'temporal.sqlite'), logFile: path.join(this.logDir, 'temporal.log'), readyTimeoutMs: 120_000 } },
      namespace: 'default',
    });
    const built = this.built;
    if (!/^qemu(\+unix)?:\/\/\/system/.test(this.libvirtUri)) this.libvirtdUnavailable = `LIBVIRT_URI=${this.libvirtUri} is not the local system daemon`;
    else if ((await this.libvirtdPid()) === undefined) this.libvirtdUnavailable = 'no libvirtd pid in /run/libvirtd.pid (a modular daemon, or systemd socket activation?)';
    this.ownsPostgres = built.postgres.kind === 'embedded';
    this.databaseUrl = built.databaseUrl;
    this.temporalAddress = built.temporal.address;
    this.cluster = built.temporal.cluster;
    // Chosen once the dev server is up: it binds further ports of its own (history, matching, worker
    // services) at random, and one of them once took the API's port number chosen before it started.
    this.apiPort = await findFreePort();
    this.apiUrl = `http://127.0.0.1:${this.apiPort}`;
    const temporalLine = this.cluster
      ? `Temporal cluster ${this.cluster.processes.map((p) => `${p.name} ${p.address}`).join(', ')} (PostgreSQL, mTLS)`
      : `Temporal dev server ${this.temporalAddress} (SQLite ${path.join(this.baseDir, 'temporal', 'temporal.sqlite')})`;
    this.o.log(`  ✓ ${temporalLine}, PostgreSQL ${this.ownsPostgres ? `embedded on port ${built.postgres.port}` : 'from DATABASE_URL (not ours: never killed)'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

    // The runner's client is plain: its processes run without the TETHER_* settings (codec) of this one.
    const { db, client } = await built.connect({ max: 12, applicationName: 'tether-chaos', plain: true });
    this.db = db;
    this.client = client;
    this.blockStorage = this.o.blockStorage?.client ?? new LocalVolumeService(this.db, { volumeDir: this.volumeDir, availabilityZone: 'nova', keyStore: volumeKeyStore({ dataDir: this.baseDir }, this.workerEnv()) });
    const libvirt = await LibvirtConnection.open(this.libvirtUri);
    this.libvirt = libvirt;
    built.onStop('libvirt connection', () => libvirt.close());
    this.service = built.service({ db, client, blockStorage: this.blockStorage, controlTaskQueue: this.controlTaskQueue, host: this.host });

    if (this.o.fakeTime) {
      await fsp.mkdir(path.join(this.baseDir, 'faketime'), { recursive: true });
      for (const w of PROXIED_WORKERS) await fsp.writeFile(this.clockFile(w), '+0\n');
    }
    if (this.o.proxies) {
      built.onStop('proxies', async () => {
        for (const p of this.proxies.values()) await p.stop();
      });
      const temporalPort = Number(this.temporalAddress.slice(this.temporalAddress.lastIndexOf(':') + 1));
      for (const w of PROXIED_WORKERS) {
        for (const d of PROXIED_DEPENDENCIES) {
          if (d === 'postgres' && !this.ownsPostgres) continue;
          const cinder = this.o.blockStorage?.env.CINDER_ENDPOINT;
          if (d === 'block-storage' && !cinder) continue;
          const upstream = d === 'temporal' ? temporalPort : d === 'postgres' ? built.postgres.port : Number(new URL(cinder!).port || 80);
          const p = new TcpProxy(`${w} ${d}`, upstream);
          await p.start();
          this.proxies.set(`${w} ${d}`, p);
        }
      }
    }
    const t1 = Date.now();
    this.workers = Object.fromEntries(await built.startProcesses(this.processSpecs(), { waitReady: true })) as Record<WorkerName, TetherProcess>;
    // Stopped first: the domains of this run's servers.
    built.onStop('the domains', async () => {
      for (const i of [...(await listInstances(db, { host: this.host })), ...(await listInstances(db, { host: this.hostB }))]) {
        await libvirt.destroyDomain(i.uuid).catch(() => undefined);
        await libvirt.undefineDomain(i.uuid).catch(() => undefined);
      }
    });
    await this.waitHealthy(120_000);
    this.o.log(`  ✓ control-plane worker, compute agent ${this.host} and API ${this.apiUrl} ready (${((Date.now() - t1) / 1000).toFixed(1)} s)`);
  }

  /** The loop-mounted ext4 image under the data folder (with `dataFilesystemMiB`). */
  get dataImage(): string {
    return `${this.baseDir}.img`;
  }

  private async mountDataFilesystem(mib: number): Promise<void> {
    const run = (cmd: string, args: string[]) => new Promise<void>((resolve, reject) => {
      execFile(cmd, args, { timeout: 60_000 }, (err, _out, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve()));
    });
    await fsp.mkdir(this.baseDir, { recursive: true });
    const image = await fsp.open(this.dataImage, 'w');
    await image.truncate(mib * 1024 * 1024);
    await image.close();
    // no blocks reserved for root: the stack runs as root, and full must mean full
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', this.dataImage]);
    await run('mount', ['-o', 'loop', this.dataImage, this.baseDir]);
    this.mounted = true;
    await fsp.chmod(this.baseDir, 0o755);
    this.o.log(`  ✓ data folder ${this.baseDir} on its own ${mib} MiB ext4 (${this.dataImage}, loop-mounted)`);
  }

  private mounted = false;

  /** Whether the data folder is on a filesystem of its own (`dataFilesystemMiB`) now. */
  get hasDataFilesystem(): boolean {
    return this.mounted;
  }

  private async unmountDataFilesystem(): Promise<void> {
    if (!this.mounted) return;
    // QEMU and PostgreSQL are gone by now; a process still closing its files makes umount busy for a moment
    for (let attempt = 1; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => execFile('umount', [this.baseDir], (err, _o, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve())));
        this.mounted = false;
        break;
      } catch (err) {
        if (attempt >= 10) throw err;
        await sleep(1000);
      }
    }
    if (!this.o.keep) await fsp.rm(this.dataImage, { force: true });
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

  private async libvirtdPid(): Promise<number | undefined> {
    try {
      const pid = Number.parseInt((await fsp.readFile('/run/libvirtd.pid', 'utf8')).trim(), 10);
      const comm = (await fsp.readFile(`/proc/${pid}/comm`, 'utf8')).trim();
      return comm === 'libvirtd' && isAlive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Temporal and PostgreSQL processes of the stack that are not running (they exited by themselves, or were killed). */
  async deadDependencies(): Promise<Array<'temporal' | 'postgres'>> {
    const dead: Array<'temporal' | 'postgres'> = [];
    const server = this.built?.temporal.devServer;
    if (server && !isAlive(server.pid)) dead.push('temporal');
    if (this.ownsPostgres && (await this.built?.postgres.postmasterPid()) === undefined) dead.push('postgres');
    return dead;
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
        const server = this.built!.temporal.devServer!;
        server.kill('SIGKILL');
        await waitGone(server.pid, 15_000);
        await server.stop();
        return;
      }
      case 'postgres': {
        const pid = await this.built!.postgres.postmasterPid();
        if (pid === undefined) throw new Error('PostgreSQL is not running');
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
        await this.built!.temporal.restart();
        return;
      case 'postgres':
        await this.built!.postgres.restart();
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

  /** Stops everything the stack started (the domains of its servers first), in reverse order; removes its folder unless `keep`. */
  async stop(): Promise<void> {
    await this.built?.stop();
    await this.unmountDataFilesystem().catch((err: unknown) => this.o.log(`  ! stopping: data filesystem: ${(err as Error).message}`));
    if (this.o.dataFilesystemMiB && !this.o.keep) {
      await fsp.rm(this.baseDir, { recursive: true, force: true }).catch(() => undefined);
      await fsp.rm(this.logDir, { recursive: true, force: true }).catch(() => undefined);
    }
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
