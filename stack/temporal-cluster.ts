/**
 * A real Temporal cluster on PostgreSQL with mTLS, as production runs it, for the cluster mode of
 * `npm start` and for the tests: N nodes (default 2) of the multi-service server v1.29.1
 * (scripts/build-temporal.sh), each running all four services, each rendered by the server itself
 * from the one configuration template deploy/temporal/config/tether.yaml with its own ports.
 *
 * At start: the certificates (stack/cluster-certificates.ts) are made or reused; the two databases
 * are created and their schemas set up or upgraded by temporal-sql-tool (deploy/temporal/setup-postgres.sh,
 * the compose file's job too); the nodes start and join one membership ring through PostgreSQL;
 * tether's namespace and search attributes are registered; start returns once every frontend
 * serves the namespace and accepts a query on those attributes. Every frontend requires a client
 * certificate signed by the cluster's CA: a client without one is refused.
 *
 * `databaseUrl` names the PostgreSQL server and, by its path, the database Temporal uses (default
 * `temporal`); the visibility store is `<that name>_visibility`. Both are created if missing.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Connection, type TLSConfig } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { projectRoot } from '../src/config.ts';
import { ensureClusterCertificates, type ClusterCertificates } from './cluster-certificates.ts';
import { temporalServerBinaries } from './temporal-binaries.ts';
import { readTail, reapOrphan } from './pid.ts';
import { waitForFrontend } from './temporal-frontend.ts';
import { DYNAMIC_CONFIG_FILE, SEARCH_ATTRIBUTES, ensureSearchAttributes } from './temporal-dev-server.ts';

const execFileAsync = promisify(execFile);

/** deploy/temporal: the root the server reads `config/tether.yaml` from. */
export const TEMPORAL_DEPLOY_DIR = path.join(projectRoot, 'deploy', 'temporal');
const CONFIG_ENV = 'tether';
/** Marks a node's environment with its cluster's data folder, so that a node orphaned by a killed parent is found again. */
const CLUSTER_MARK = 'TETHER_TEMPORAL_CLUSTER_DIR';

export interface TemporalClusterTls {
  /** The CA every node's and client's certificate is signed by. */
  caFile: string;
  /** The client certificate pair tether's processes present (mTLS). */
  certFile: string;
  keyFile: string;
  /** The name the nodes' certificate carries; clients verify against it (and send it as SNI). */
  serverName: string;
}

export interface TemporalClusterProcess {
  /** temporal-1, temporal-2, … */
  name: string;
  pid: number;
  /** host:port of this node's frontend. */
  address: string;
  /** This node's Prometheus endpoint, when started with `metrics`. */
  metricsUrl?: string;
}

export interface TemporalCluster {
  /** host:port of every node's frontend, in node order. */
  frontends: string[];
  tls: TemporalClusterTls;
  /** The namespace registered (with tether's search attributes). */
  namespace: string;
  /** Every node, with its current pid (a restarted node has a new one). */
  readonly processes: TemporalClusterProcess[];
  /** Where node `name` writes its output. */
  logFile(name: string): string;
  /** True while node `name` runs. */
  running(name: string): boolean;
  /** Sends a signal to node `name` (SIGKILL simulates a crash, SIGSTOP a hang) without waiting. */
  kill(name: string, signal?: NodeJS.Signals): void;
  /** Starts node `name` again (after kill) on its ports, and waits until its frontend serves the namespace. */
  restart(name: string): Promise<void>;
  /** Stops every node (SIGTERM, SIGKILL after 15 s) and waits. Idempotent. */
  stop(): Promise<void>;
}

export interface StartTemporalClusterOptions {
  /** Certificates (certs/), logs and pid files of the nodes. */
  dataDir: string;
  /** postgres://user:password@host:port/database — the database Temporal uses (default "temporal"). */
  databaseUrl: string;
  /** How many nodes; default 2. */
  nodes?: number;
  /** Namespace to register; default TEMPORAL_NAMESPACE or "default". */
  namespace?: string;
  /** History shards when the schema is first set up (fixed afterwards); default 4. */
  historyShards?: number;
  /** How long to wait for the nodes and the namespace; default 120 s. */
  readyTimeoutMs?: number;
  /** Each node serves its Prometheus metrics on a port of its own (PROMETHEUS_ENDPOINT; the scale simulation reads them). */
  metrics?: boolean;
}

/** The ports one node listens on (all on 127.0.0.1). */
interface NodePorts {
  frontend: number;
  frontendHttp: number;
  frontendMembership: number;
  history: number;
  historyMembership: number;
  matching: number;
  matchingMembership: number;
  worker: number;
  workerMembership: number;
  /** Prometheus endpoint; 0 = none */
  metrics: number;
}

interface Node {
  name: string;
  ports: NodePorts;
  address: string;
  logFile: string;
  pidFile: string;
  child?: ChildProcess;
  exited: Promise<void>;
  running: boolean;
}

/** The TLS options of an SDK connection (Connection or NativeConnection) that presents the cluster's client certificate. */
export function clusterTlsConfig(tls: TemporalClusterTls): TLSConfig {
  return {
    serverRootCACertificate: fs.readFileSync(tls.caFile),
    clientCertPair: { crt: fs.readFileSync(tls.certFile), key: fs.readFileSync(tls.keyFile) },
    serverNameOverride: tls.serverName,
  };
}

/** The environment variables (src/config.ts) that make a tether process use the cluster: every frontend, mTLS. */
export function clusterClientEnv(cluster: Pick<TemporalCluster, 'frontends' | 'tls' | 'namespace'>): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: cluster.frontends.join(','),
    TEMPORAL_NAMESPACE: cluster.namespace,
    TEMPORAL_TLS: 'true',
    TEMPORAL_TLS_CA: cluster.tls.caFile,
    TEMPORAL_TLS_CERT: cluster.tls.certFile,
    TEMPORAL_TLS_KEY: cluster.tls.keyFile,
    TEMPORAL_TLS_SERVER_NAME: cluster.tls.serverName,
  };
}

export async function startTemporalCluster(opts: StartTemporalClusterOptions): Promise<TemporalCluster> {
  const dataDir = path.resolve(opts.dataDir);
  const nodeCount = opts.nodes ?? 2;
  if (!Number.isInteger(nodeCount) || nodeCount < 1) throw new Error(`nodes must be a positive integer, got ${opts.nodes}`);
  const namespace = opts.namespace ?? (process.env.TEMPORAL_NAMESPACE || 'default');
  const readyTimeoutMs = opts.readyTimeoutMs ?? 120_000;
  const { server, sqlTool } = temporalServerBinaries();
  for (const binary of [server, sqlTool]) {
    try {
      await fsp.access(binary, fs.constants.X_OK);
    } catch {
      throw new Error(`${binary} not found (or not executable): run scripts/build-temporal.sh server (or set TETHER_TEMPORAL_SERVER_BIN)`);
    }
  }
  await fsp.mkdir(dataDir, { recursive: true });
  const certs = await ensureClusterCertificates(path.join(dataDir, 'certs'));
  const tls: TemporalClusterTls = { caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile, serverName: certs.serverName };
  const db = databaseSettings(opts.databaseUrl);

  await setUpSchema(db, sqlTool, path.join(dataDir, 'setup-postgres.log'));

  const nodes: Node[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    const name = `temporal-${i}`;
    await reapOrphanedNode(path.join(dataDir, `${name}.pid`), dataDir);
    const ports: NodePorts = { ...(await freePorts()), metrics: 0 };
    if (opts.metrics) ports.metrics = (await freePorts()).frontend;
    nodes.push({
      name,
      ports,
      address: `127.0.0.1:${ports.frontend}`,
      logFile: path.join(dataDir, `${name}.log`),
      pidFile: path.join(dataDir, `${name}.pid`),
      exited: Promise.resolve(),
      running: false,
    });
  }
  const publicFrontend = nodes[0]!.address;
  const baseEnv = nodeBaseEnv(db, certs, opts.historyShards ?? 4, publicFrontend, dataDir);

  const launch = async (node: Node): Promise<void> => {
    const log = fs.openSync(node.logFile, 'a');
    const args = ['--root', TEMPORAL_DEPLOY_DIR, '--config', 'config', '--env', CONFIG_ENV, '--allow-no-auth', 'start'];
    fs.writeSync(log, `\n=== ${new Date().toISOString()} ${node.name}: ${server} ${args.join(' ')} (frontend ${node.address})\n`);
    const child = spawn(server, args, { env: { ...baseEnv, ...nodePortEnv(node.ports) }, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    node.child = child;
    node.running = true;
    node.exited = new Promise((resolve) => {
      child.once('exit', () => {
        node.running = false;
        resolve();
      });
      child.once('error', () => {
        node.running = false;
        resolve();
      });
    });
    if (child.pid === undefined) throw new Error(`could not start ${server} for ${node.name}`);
    await fsp.writeFile(node.pidFile, `${child.pid} ${process.pid}\n`);
  };

  const stopNode = async (node: Node, graceMs = 15_000): Promise<void> => {
    if (node.running && node.child) {
      node.child.kill('SIGCONT'); // a SIGSTOPped node cannot act on SIGTERM
      node.child.kill('SIGTERM');
      const escalate = setTimeout(() => node.child?.kill('SIGKILL'), graceMs);
      await node.exited;
      clearTimeout(escalate);
    }
    await fsp.rm(node.pidFile, { force: true });
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= Promise.all(nodes.map((n) => stopNode(n))).then(() => undefined);
    return stopping;
  };

  const deadline = () => Date.now() + readyTimeoutMs;
  try {
    // The first node alone first: on a fresh database every node tries to write the cluster's
    // metadata, and a node that loses that race exits ("failed to initialize current cluster metadata").
    const [first, ...others] = nodes;
    await launch(first!);
    await waitForNode(first!, tls, deadline());
    await Promise.all(others.map(launch));
    await Promise.all(others.map((n) => waitForNode(n, tls, deadline())));
    await registerNamespace(nodes[0]!.address, tls, namespace, deadline());
    await Promise.all(nodes.map((n) => waitForNamespace(n, tls, namespace, deadline())));
  } catch (err) {
    await stop();
    const tails = await Promise.all(nodes.map(async (n) => `--- last output of ${n.name} (${n.logFile}) ---\n${await readTail(n.logFile)}`));
    throw new Error(`Temporal cluster did not start: ${(err as Error).message}\n${tails.join('\n')}`);
  }

  const byName = (name: string): Node => {
    const node = nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no Temporal node named ${name} (have ${nodes.map((n) => n.name).join(', ')})`);
    return node;
  };

  return {
    frontends: nodes.map((n) => n.address),
    tls,
    namespace,
    get processes() {
      return nodes.map((n) => ({ name: n.name, pid: n.child?.pid ?? 0, address: n.address, ...(n.ports.metrics ? { metricsUrl: `http://127.0.0.1:${n.ports.metrics}/metrics` } : {}) }));
    },
    logFile: (name) => byName(name).logFile,
    running: (name) => byName(name).running,
    kill(name, signal = 'SIGTERM') {
      const node = byName(name);
      if (node.running) node.child?.kill(signal);
    },
    async restart(name) {
      const node = byName(name);
      await stopNode(node, 5_000);
      await launch(node);
      await waitForNode(node, tls, deadline());
      await waitForNamespace(node, tls, namespace, deadline());
    },
    stop,
  };
}

interface DatabaseSettings {
  host: string;
  port: string;
  user: string;
  password: string;
  database: string;
  visibilityDatabase: string;
}

function databaseSettings(databaseUrl: string): DatabaseSettings {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || 'temporal';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) throw new Error(`Temporal database name ${JSON.stringify(database)}: letters, digits and _ only`);
  return {
    host: url.hostname || '127.0.0.1',
    port: url.port || '5432',
    user: decodeURIComponent(url.username) || 'postgres',
    password: decodeURIComponent(url.password),
    database,
    visibilityDatabase: `${database}_visibility`,
  };
}

/** deploy/temporal/setup-postgres.sh with the tool scripts/build-temporal.sh built: creates the databases, sets up or upgrades their schemas. */
async function setUpSchema(db: DatabaseSettings, sqlTool: string, logFile: string): Promise<void> {
  try {
    const { stdout, stderr } = await execFileAsync('sh', [path.join(TEMPORAL_DEPLOY_DIR, 'setup-postgres.sh')], {
      env: {
        ...process.env,
        TEMPORAL_SQL_TOOL: sqlTool,
        POSTGRES_SEEDS: db.host,
        DB_PORT: db.port,
        POSTGRES_USER: db.user,
        POSTGRES_PWD: db.password,
        DBNAME: db.database,
        VISIBILITY_DBNAME: db.visibilityDatabase,
      },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 300_000,
    });
    await fsp.writeFile(logFile, `${stdout}${stderr}`);
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    await fsp.writeFile(logFile, `${e.stdout ?? ''}${e.stderr ?? ''}`).catch(() => undefined);
    throw new Error(`Temporal schema setup failed (log: ${logFile}): ${(e.stderr ?? '').trim().split('\n').slice(-5).join('\n') || e.message}`);
  }
}

/** What every node's environment holds (the template's variables, see deploy/temporal/config/tether.yaml). */
function nodeBaseEnv(db: DatabaseSettings, certs: ClusterCertificates, shards: number, publicFrontend: string, dataDir: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    [CLUSTER_MARK]: dataDir,
    LOG_LEVEL: process.env.TETHER_TEMPORAL_LOG_LEVEL || 'warn',
    POSTGRES_SEEDS: db.host,
    DB_PORT: db.port,
    POSTGRES_USER: db.user,
    POSTGRES_PWD: db.password,
    DBNAME: db.database,
    VISIBILITY_DBNAME: db.visibilityDatabase,
    NUM_HISTORY_SHARDS: String(shards),
    BIND_ON_IP: '127.0.0.1',
    TEMPORAL_BROADCAST_ADDRESS: '127.0.0.1',
    PUBLIC_FRONTEND_ADDRESS: publicFrontend,
    DYNAMIC_CONFIG_FILE_PATH: DYNAMIC_CONFIG_FILE,
    TEMPORAL_TLS_SERVER_CERT: certs.serverCertFile,
    TEMPORAL_TLS_SERVER_KEY: certs.serverKeyFile,
    TEMPORAL_TLS_SERVER_CA_CERT: certs.caFile,
    TEMPORAL_TLS_CLIENT1_CA_CERT: certs.caFile,
    TEMPORAL_TLS_INTERNODE_SERVER_NAME: certs.serverName,
    TEMPORAL_TLS_FRONTEND_SERVER_NAME: certs.serverName,
    TEMPORAL_TLS_REQUIRE_CLIENT_AUTH: 'true',
  };
}

function nodePortEnv(p: NodePorts): NodeJS.ProcessEnv {
  return {
    FRONTEND_GRPC_PORT: String(p.frontend),
    FRONTEND_HTTP_PORT: String(p.frontendHttp),
    FRONTEND_MEMBERSHIP_PORT: String(p.frontendMembership),
    HISTORY_GRPC_PORT: String(p.history),
    HISTORY_MEMBERSHIP_PORT: String(p.historyMembership),
    MATCHING_GRPC_PORT: String(p.matching),
    MATCHING_MEMBERSHIP_PORT: String(p.matchingMembership),
    WORKER_GRPC_PORT: String(p.worker),
    WORKER_MEMBERSHIP_PORT: String(p.workerMembership),
    ...(p.metrics ? { PROMETHEUS_ENDPOINT: `127.0.0.1:${p.metrics}` } : {}),
  };
}

/**
 * A port free on 127.0.0.1 below 32768: the server stores a node's membership port in a smallint
 * (cluster_membership.rpc_port), so the kernel's ephemeral ports (32768 and up) are refused there.
 */
async function freeLowPort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.unref();
      server.once('error', () => resolve(false));
      server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port between 20000 and 32000 on 127.0.0.1');
}

async function freePorts(): Promise<Omit<NodePorts, 'metrics'>> {
  const taken = new Set<number>();
  const next = async () => {
    for (;;) {
      const port = await freeLowPort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  return {
    frontend: await next(),
    frontendHttp: await next(),
    frontendMembership: await next(),
    history: await next(),
    historyMembership: await next(),
    matching: await next(),
    matchingMembership: await next(),
    worker: await next(),
    workerMembership: await next(),
  };
}

async function connect(address: string, tls: TemporalClusterTls): Promise<Connection> {
  return Connection.connect({ address, tls: clusterTlsConfig(tls), connectTimeout: 5_000 });
}

/** Until the node's frontend answers GetSystemInfo over mTLS (fails at once when the node exits). */
function waitForNode(node: Node, tls: TemporalClusterTls, deadline: number): Promise<void> {
  return waitForFrontend({ name: node.name, address: node.address, tls: clusterTlsConfig(tls), deadline, exited: () => !node.running });
}

const RETENTION_DAYS = 7;

/** Registers the namespace when missing, then tether's search attributes. Idempotent; retried while the cluster settles. */
async function registerNamespace(address: string, tls: TemporalClusterTls, namespace: string, deadline: number): Promise<void> {
  let last: unknown;
  while (Date.now() < deadline) {
    let connection: Connection | undefined;
    try {
      connection = await connect(address, tls);
      const service = connection.workflowService;
      try {
        await connection.withDeadline(Date.now() + 10_000, () => service.describeNamespace({ namespace }));
      } catch (err) {
        if ((err as { code?: number }).code !== 5) throw err; // NOT_FOUND: register it
        try {
          await connection.withDeadline(Date.now() + 10_000, () =>
            service.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs(`${RETENTION_DAYS} days`) }),
          );
        } catch (e) {
          if ((e as { code?: number }).code !== 6) throw e; // ALREADY_EXISTS: registered concurrently
        }
      }
      await connection.withDeadline(Date.now() + 10_000, () => ensureSearchAttributes(connection!, namespace));
      return;
    } catch (err) {
      last = err;
      await sleep(500);
    } finally {
      await connection?.close().catch(() => undefined);
    }
  }
  throw new Error(`could not register namespace ${namespace}: ${(last as Error)?.message ?? 'timeout'}`);
}

/** Until this node's frontend knows the namespace and accepts a query on every search attribute (its caches refresh on their own). */
async function waitForNamespace(node: Node, tls: TemporalClusterTls, namespace: string, deadline: number): Promise<void> {
  const query = Object.keys(SEARCH_ATTRIBUTES)
    .map((name) => `${name} = 'tether-setup-probe'`)
    .join(' AND ');
  let last: unknown;
  while (Date.now() < deadline) {
    if (!node.running) throw new Error(`${node.name} exited`);
    let connection: Connection | undefined;
    try {
      connection = await connect(node.address, tls);
      await connection.withDeadline(Date.now() + 10_000, () => connection!.workflowService.listWorkflowExecutions({ namespace, query, pageSize: 1 }));
      return;
    } catch (err) {
      last = err;
      await sleep(500);
    } finally {
      await connection?.close().catch(() => undefined);
    }
  }
  throw new Error(`${node.name} does not serve namespace ${namespace} with tether's search attributes: ${(last as Error)?.message ?? 'timeout'}`);
}

/**
 * A node left running by a parent that was SIGKILLed (children survive it) holds its ports and its
 * place in the ring: the pid file "nodePid parentPid" finds it, its environment proves it is this
 * cluster's. Stopped when its parent is gone; refused when the parent still runs.
 */
function reapOrphanedNode(pidFile: string, dataDir: string): Promise<void> {
  return reapOrphan(pidFile, {
    what: 'a Temporal node',
    on: dataDir,
    graceMs: 15_000,
    isOurs: async (pid) => (await fsp.readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')).split('\0').includes(`${CLUSTER_MARK}=${dataDir}`),
  });
}
