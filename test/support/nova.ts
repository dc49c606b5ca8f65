/**
 * A real Nova beside tether (Debian's nova-api, nova-conductor, nova-scheduler, nova-compute 26.2.2
 * "Zed", and placement-api), for the side-by-side tests, the benchmark and the kill comparison only —
 * never part of `npm start`. docs/nova.md says what it runs and why.
 *
 *   - MariaDB: databases nova_api_<id>, nova_<id> (cell1), nova_cell0_<id>, placement_<id>. The schemas
 *     come from `placement-manage db sync`, `nova-manage api_db sync` and `nova-manage db sync
 *     --local_cell` once per Nova version (~30 s), cached as SQL dumps in ~/.cache/tether/nova/ and
 *     loaded in about a second after that; the two cell mappings are the rows `nova-manage cell_v2
 *     map_cell0` and `create_cell` would write.
 *   - RabbitMQ: a vhost of its own (tether_nova_<id>).
 *   - Cinder: the one given (test/support/cinder.ts, shared with tether): Nova talks to it as user
 *     `nova` of Cinder's project (noauth), whom that Cinder gives the service role.
 *   - libvirt: qemu:///system, domains named nova-<id>-<n> (virt_type qemu, cpu_mode none); started
 *     once libvirtd answers (a libvirtd restarted under nova-compute's init_host kills it).
 *   - Placement: placement-api under uwsgi, one process.
 *   - auth: noauth2 for Nova and Placement (token `admin:<project>`, the project being Cinder's).
 *   - missing services: Keystone, Glance and Neutron are absent; the one Nova calls, Neutron, is
 *     answered by a stand-in in this process (every GET of a /v2.0 collection: an empty list; anything
 *     else 404), which records each call. Servers boot from a Cinder volume ("networks": "none").
 *
 * Ready means: the API answers, nova-compute is up in os-services, its host is mapped to cell1 (the
 * scheduler's periodic discovery) and Placement has its inventory; the flavor `tether-nova` (64 MiB,
 * 1 vCPU, no disk) exists. `stop()` deletes the domains of its servers, ends the daemons, drops the
 * databases and the vhost, and removes its folder.
 *
 * Also a command: `node --import tsx test/support/nova.ts` (scripts/start-nova.sh) starts a Cinder and
 * a Nova and prints how to reach them.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '../../stack/free-port.ts';
import { ensureLibvirtd } from '../../stack/libvirtd.ts';
import { LibvirtConnection } from '../../src/libvirt/binding.ts';
import type { CinderHandle } from './cinder.ts';
import {
  addVhost,
  cacheDir,
  deleteVhost,
  ini,
  isRunning,
  loadDump,
  migrationsKey,
  mysql,
  mysqlTarget,
  mysqlValue,
  PYTHON,
  PYTHON_DIR,
  rabbitUrl,
  rssMiB,
  run,
  saveDump,
  spawnDaemon,
  sqlalchemyUrl,
  stopChild,
  tail,
  type MysqlTarget,
} from './openstack-processes.ts';
import { tcpMissing } from './probes.ts';

const NOVA_PY = '/usr/lib/python3/dist-packages/nova';
const PLACEMENT_PY = '/usr/lib/python3/dist-packages/placement';
const LIBVIRT_URI = process.env.LIBVIRT_URI ?? 'qemu:///system';
/** Nova's microversion range (Zed). */
export const NOVA_MAX_MICROVERSION = '2.93';

/** The Debian packages the harness runs (scripts/test-deps/nova.sh installs them). */
export const NOVA_PACKAGES = ['nova-api', 'nova-conductor', 'nova-scheduler', 'nova-compute', 'nova-compute-qemu', 'placement-api', 'python3-pymysql'];

export type NovaService = 'api' | 'conductor' | 'scheduler' | 'compute' | 'placement';

export interface NovaOptions {
  /** The Cinder Nova uses (and tether shares); its driver must give connection_info Nova can attach ('loop'). */
  cinder: CinderHandle;
  /** Folder of the pause points inside nova-compute (test/support/python/tether_nova_pause.py); none by default. */
  pauseDir?: string;
  /** Extra [DEFAULT] options for every Nova service. */
  extraDefaults?: Record<string, string | number | boolean>;
}

export interface NovaTimings {
  schemaMs: number;
  schemaFromCache: boolean;
  /** Daemons spawned until the API answered. */
  apiMs: number;
  /** …until nova-compute was up, its host mapped and its inventory in Placement. */
  computeMs: number;
  totalMs: number;
}

export interface NovaAnswer<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
  ms: number;
}

export interface NovaServer {
  id: string;
  name: string;
  /** The Cinder volume it boots from (deleted with the server). */
  bootVolumeId: string;
  /** libvirt's name of its domain. */
  domainName: string;
}

export interface NovaHandle {
  id: string;
  /** http://127.0.0.1:PORT (the compute API is under /v2.1) */
  url: string;
  /** Cinder's project: Nova's requests are made in it. */
  projectId: string;
  /** X-Auth-Token for noauth2: an admin of the project. */
  token: string;
  host: string;
  stateDir: string;
  timings: NovaTimings;
  cinder: CinderHandle;
  /** Every request Nova made to the Neutron stand-in ("GET /v2.0/ports?device_id=…"). */
  neutronCalls: string[];
  /** A compute API call (`path` below /v2.1), with the microversion given (default: none sent). */
  api<T = unknown>(method: string, path: string, o?: { body?: unknown; rawBody?: string; microversion?: string; headers?: Record<string, string>; timeoutMs?: number }): Promise<NovaAnswer<T>>;
  /** Boots a server from a new bootable Cinder volume (virtio-scsi bus) and waits for ACTIVE. */
  createServer(name: string): Promise<NovaServer>;
  /** Deletes a server and waits until it is gone (its boot volume goes with it). */
  deleteServer(id: string): Promise<void>;
  /** Waits until the server's vm_state/task_state settle (no task) and returns its status. */
  waitServer(id: string, status: string | string[], timeoutMs?: number): Promise<Record<string, unknown>>;
  /** One value from one of its databases (e.g. "SELECT COUNT(*) FROM block_device_mapping WHERE …"). */
  sql(database: 'nova' | 'nova_api' | 'placement', query: string): Promise<string | null>;
  /** pid of a daemon (the main process). */
  pid(service: NovaService): number | undefined;
  /** pids of all Nova and Placement processes (for CPU and memory sampling). */
  pids(): number[];
  /** Resident memory per service, MiB. */
  rssMiB(): Record<NovaService, number>;
  /** SIGKILL of nova-compute (the process only, as a crash would); resolves once it is gone. */
  killCompute(): Promise<void>;
  /** Starts nova-compute again and waits until it serves RPC (its Service.start returned; needs pauseDir) or is up. */
  restartCompute(): Promise<void>;
  logFile(service: NovaService): string;
  stop(): Promise<void>;
}

// ---- availability ----

/** Whether a Nova can be started here, and if not, why (the skip message). */
export async function novaAvailability(): Promise<{ available: boolean; reason: string }> {
  const missing: string[] = [];
  for (const [file, what] of [
    ['/usr/bin/nova-api', 'nova-api'],
    ['/usr/bin/nova-conductor', 'nova-conductor'],
    ['/usr/bin/nova-scheduler', 'nova-scheduler'],
    [`${NOVA_PY}/cmd/compute.py`, 'nova-compute'],
    [`${NOVA_PY}/virt/libvirt/driver.py`, 'nova-compute-qemu (python3-nova libvirt driver)'],
    ['/usr/bin/placement-api', 'placement-api'],
    ['/usr/bin/uwsgi', 'uwsgi (uwsgi-plugin-python3)'],
    ['/usr/sbin/rabbitmqctl', 'rabbitmqctl (rabbitmq-server)'],
    ['/usr/bin/mysql', 'the mysql client (mariadb-client)'],
    ['/usr/sbin/losetup', 'losetup (mount)'],
  ] as const) {
    if (!fs.existsSync(file)) missing.push(what);
  }
  if (missing.length > 0) {
    return { available: false, reason: `no Nova here: missing ${missing.join(', ')} (\`npm test\` installs them: scripts/test-deps/nova.sh)` };
  }
  const db = mysqlTarget();
  const noDb = await tcpMissing(db.host, db.port);
  if (noDb) return { available: false, reason: `no Nova here: MariaDB: ${noDb} (\`npm test\` starts one: scripts/test-deps/mariadb.sh)` };
  const r = new URL(rabbitUrl().replace(/^rabbit:/, 'amqp:'));
  const noRabbit = await tcpMissing(r.hostname, Number(r.port || 5672));
  if (noRabbit) return { available: false, reason: `no Nova here: RabbitMQ: ${noRabbit} (\`npm test\` starts one: scripts/test-deps/rabbitmq.sh)` };
  if (!fs.existsSync('/dev/loop-control')) return { available: false, reason: 'no Nova here: no loop devices (/dev/loop-control) for volumes both can attach' };
  return { available: true, reason: 'ok' };
}

// ---- databases ----

interface Databases {
  api: string;
  cell1: string;
  cell0: string;
  placement: string;
}

const SCHEMAS = {
  placement: { dirs: [`${PLACEMENT_PY}/db/sqlalchemy/alembic/versions`] },
  nova_api: { dirs: [`${NOVA_PY}/db/api/migrations/versions`, `${NOVA_PY}/db/api/legacy_migrations/versions`] },
  nova_cell: { dirs: [`${NOVA_PY}/db/main/migrations/versions`, `${NOVA_PY}/db/main/legacy_migrations/versions`] },
} as const;

function dumpFile(schema: keyof typeof SCHEMAS): string {
  return path.join(cacheDir('nova'), `${schema}-${migrationsKey([...SCHEMAS[schema].dirs], schema)}.sql`);
}

/**
 * Creates the four databases with their schemas: from the cached dumps, or by the manage commands
 * (then caches dumps). Returns whether all came from the cache.
 */
async function prepareDatabases(db: MysqlTarget, names: Databases, files: { novaConf: string; placementConf: string; logDir: string }): Promise<boolean> {
  await mysql(db, Object.values(names).map((n) => `CREATE DATABASE \`${n}\` CHARACTER SET utf8mb4;`).join(' '));
  const log = (name: string) => ['--log-file', path.join(files.logDir, `${name}.log`)];
  const manage = async (schema: keyof typeof SCHEMAS, database: string, sync: () => Promise<unknown>): Promise<boolean> => {
    const dump = dumpFile(schema);
    if (fs.existsSync(dump)) {
      await loadDump(db, database, dump);
      return true;
    }
    await sync();
    await saveDump(db, database, dump);
    return false;
  };
  const results = await Promise.all([
    manage('placement', names.placement, () => run('placement-manage', ['--config-file', files.placementConf, 'db', 'sync'], { timeout: 300_000 })),
    manage('nova_api', names.api, () => run('nova-manage', ['--config-file', files.novaConf, ...log('api-db-sync'), 'api_db', 'sync'], { timeout: 300_000 })),
    manage('nova_cell', names.cell1, () => run('nova-manage', ['--config-file', files.novaConf, ...log('db-sync'), 'db', 'sync', '--local_cell'], { timeout: 300_000 })),
  ]);
  await loadDump(db, names.cell0, dumpFile('nova_cell'));
  return results.every(Boolean);
}

// ---- the Neutron stand-in ----

/**
 * Nova without Neutron: `GET /servers/{id}` asks for the server's ports (GET /v2.0/ports?device_id=…)
 * and answers 500 when nothing listens; periodic tasks ask too. Every GET of a collection under /v2.0
 * answers an empty list of it (`{"ports": []}`); anything else 404. Each call is recorded.
 */
async function startNeutronStandIn(calls: string[]): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    calls.push(`${req.method} ${req.url}`);
    const collection = /^\/v2\.0\/([a-z-]+)(?:\.json)?(?:\?.*)?$/.exec(req.url ?? '')?.[1];
    res.setHeader('Content-Type', 'application/json');
    if (req.method === 'GET' && collection) {
      res.end(JSON.stringify({ [collection.replace(/-/g, '_')]: [] }));
    } else {
      res.statusCode = 404;
      res.end(JSON.stringify({ NeutronError: { type: 'HTTPNotFound', message: 'tether test stand-in: only GET of /v2.0 collections is served', detail: '' } }));
    }
  });
  const port = await findFreePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

// ---- start ----

export async function startNova(options: NovaOptions): Promise<NovaHandle> {
  const t0 = performance.now();
  const { cinder } = options;
  const id = randomBytes(4).toString('hex');
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `tether-nova-${id}-`));
  for (const d of ['state', 'instances', 'locks', 'log', 'placement']) fs.mkdirSync(path.join(stateDir, d));
  const logDir = path.join(stateDir, 'log');
  const db = mysqlTarget();
  const names: Databases = { api: `nova_api_${id}`, cell1: `nova_${id}`, cell0: `nova_cell0_${id}`, placement: `placement_${id}` };
  const vhost = `tether_nova_${id}`;
  const transportUrl = `${rabbitUrl()}/${vhost}`;
  const host = `nova-${id}`;
  const projectId = cinder.projectId;
  const token = `admin:${projectId}`;
  const [apiPort, placementPort] = [await findFreePort(), await findFreePort()];
  const neutronCalls: string[] = [];
  const neutron = await startNeutronStandIn(neutronCalls);
  const cinderRoot = new URL(cinder.endpoint).origin;

  const novaConf = path.join(stateDir, 'nova.conf');
  const computeConf = path.join(stateDir, 'nova-compute.conf');
  const placementConf = path.join(stateDir, 'placement', 'placement.conf');
  const sections: Record<string, Record<string, string | number | boolean>> = {
    DEFAULT: {
      debug: false,
      state_path: path.join(stateDir, 'state'),
      instances_path: path.join(stateDir, 'instances'),
      transport_url: transportUrl,
      my_ip: '127.0.0.1',
      host,
      enabled_apis: 'osapi_compute',
      osapi_compute_listen: '127.0.0.1',
      osapi_compute_listen_port: apiPort,
      osapi_compute_workers: 1,
      compute_driver: 'libvirt.LibvirtDriver',
      instance_name_template: `nova-${id}-%x`,
      // a server deleted or shelved gives its volumes back at once
      reclaim_instance_interval: 0,
      shelved_offload_time: 0,
      ...(options.extraDefaults ?? {}),
    },
    api: { auth_strategy: 'noauth2' },
    wsgi: { api_paste_config: '/etc/nova/api-paste.ini' },
    api_database: { connection: sqlalchemyUrl(db, names.api) },
    database: { connection: sqlalchemyUrl(db, names.cell1) },
    conductor: { workers: 1 },
    // the scheduler maps new compute hosts to cell1 every 2 s (what `nova-manage cell_v2 discover_hosts` does)
    scheduler: { workers: 1, discover_hosts_in_cells_interval: 2 },
    placement: { auth_type: 'admin_token', endpoint: `http://127.0.0.1:${placementPort}`, endpoint_override: `http://127.0.0.1:${placementPort}`, token: 'admin' },
    neutron: { auth_type: 'admin_token', endpoint: `http://127.0.0.1:${neutron.port}`, endpoint_override: `http://127.0.0.1:${neutron.port}`, token: 'admin' },
    cinder: { auth_type: 'admin_token', endpoint: cinder.endpoint, token: `nova:${projectId}`, endpoint_template: `${cinderRoot}/v3/%(project_id)s` },
    libvirt: { virt_type: 'qemu', cpu_mode: 'none', connection_uri: LIBVIRT_URI },
    vnc: { enabled: false },
    spice: { enabled: false },
    oslo_concurrency: { lock_path: path.join(stateDir, 'locks') },
    oslo_messaging_notifications: { driver: 'noop' },
    os_brick: { lock_path: path.join(stateDir, 'locks') },
  };
  fs.writeFileSync(novaConf, ini(sections));
  // nova-compute refuses a config with database access ("No DB access allowed in nova-compute")
  const { api_database: _a, database: _d, ...computeSections } = sections;
  fs.writeFileSync(computeConf, ini(computeSections));
  fs.writeFileSync(
    placementConf,
    ini({
      DEFAULT: { debug: false },
      api: { auth_strategy: 'noauth2' },
      placement_database: { connection: sqlalchemyUrl(db, names.placement) },
      oslo_policy: { enforce_scope: false, enforce_new_defaults: false },
    }),
  );

  const children = new Map<NovaService, ChildProcess>();
  let dbCreated = false;
  let vhostCreated = false;
  let stopped = false;
  const logFile = (service: NovaService) => path.join(logDir, `${service}.log`);
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: PYTHON_DIR, ...(options.pauseDir ? { TETHER_NOVA_PAUSE: options.pauseDir } : {}) };
  delete env.PYTHONHOME;

  const spawnService = (service: NovaService): ChildProcess => {
    const outFile = path.join(logDir, `${service}.out`);
    let child: ChildProcess;
    if (service === 'placement') {
      child = spawnDaemon(
        '/usr/bin/uwsgi',
        ['--plugin', 'python3', '--http-socket', `127.0.0.1:${placementPort}`, '--wsgi-file', '/usr/bin/placement-api', '--processes', '1', '--threads', '4', '--die-on-term', '--need-app', '--logto', logFile(service), '--env', `OS_PLACEMENT_CONFIG_DIR=${path.dirname(placementConf)}`],
        { cwd: stateDir, env, outFile },
      );
    } else if (service === 'compute') {
      child = spawnDaemon(PYTHON, [path.join(PYTHON_DIR, 'tether_nova_compute.py'), '--config-file', computeConf, '--log-file', logFile(service)], { cwd: stateDir, env, outFile });
    } else {
      child = spawnDaemon(`/usr/bin/nova-${service}`, ['--config-file', novaConf, '--log-file', logFile(service)], { cwd: stateDir, env, outFile });
    }
    children.set(service, child);
    return child;
  };

  const api = async <T>(method: string, p: string, o: { body?: unknown; rawBody?: string; microversion?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<NovaAnswer<T>> => {
    const t = performance.now();
    const headers: Record<string, string> = { 'X-Auth-Token': token, Accept: 'application/json', ...(o.microversion ? { 'OpenStack-API-Version': `compute ${o.microversion}` } : {}), ...o.headers };
    let body: string | undefined;
    if (o.rawBody !== undefined) body = o.rawBody;
    else if (o.body !== undefined) body = JSON.stringify(o.body);
    if (body !== undefined) headers['Content-Type'] ??= 'application/json';
    const res = await fetch(`http://127.0.0.1:${apiPort}/v2.1${p}`, { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(o.timeoutMs ?? 120_000) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      // keep the text
    }
    return { status: res.status, body: parsed as T, headers: res.headers, ms: performance.now() - t };
  };
  const placement = async (p: string) => {
    const res = await fetch(`http://127.0.0.1:${placementPort}${p}`, { headers: { 'X-Auth-Token': 'admin', 'OpenStack-API-Version': 'placement 1.0', Accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
    return { status: res.status, body: (await res.json().catch(() => undefined)) as Record<string, unknown> };
  };
  const sql = (database: 'nova' | 'nova_api' | 'placement', query: string) =>
    mysqlValue(db, query, database === 'nova' ? names.cell1 : database === 'nova_api' ? names.api : names.placement);

  const cleanup = async () => {
    // the domains of its servers (by the instance uuids in its own cell database), then the daemons
    if (dbCreated) {
      const uuids = (await sql('nova', 'SELECT GROUP_CONCAT(uuid) FROM instances').catch(() => null))?.split(',').filter(Boolean) ?? [];
      if (uuids.length > 0) {
        const libvirt = await LibvirtConnection.open(LIBVIRT_URI).catch(() => undefined);
        for (const uuid of uuids) {
          await libvirt?.destroyDomain(uuid).catch(() => undefined);
          await libvirt?.undefineDomain(uuid).catch(() => undefined);
        }
        await libvirt?.close();
      }
    }
    await Promise.all([...children.values()].map((c) => stopChild(c, 10_000)));
    await neutron.close();
    if (dbCreated) await mysql(db, Object.values(names).map((n) => `DROP DATABASE IF EXISTS \`${n}\`;`).join(' ')).catch(() => undefined);
    if (vhostCreated) await deleteVhost(vhost).catch(() => undefined);
    if (!process.env.TETHER_KEEP_NOVA_LOGS) fs.rmSync(stateDir, { recursive: true, force: true });
  };

  const alive = (deadline: number, what: string) => {
    for (const [service, child] of children) {
      if (!isRunning(child)) throw new Error(`nova ${service} exited (${child.exitCode ?? child.signalCode}):\n${tail(logFile(service))}\n${tail(path.join(logDir, `${service}.out`), 10)}`);
    }
    if (Date.now() > deadline) throw new Error(`Nova: ${what} not within the time allowed; logs in ${logDir}`);
  };

  try {
    const tSchema = performance.now();
    dbCreated = true;
    vhostCreated = true;
    const [schemaFromCache] = await Promise.all([prepareDatabases(db, names, { novaConf, placementConf, logDir }), addVhost(vhost), ensureLibvirtd(LIBVIRT_URI)]);
    // what `nova-manage cell_v2 map_cell0` and `nova-manage cell_v2 create_cell --name cell1` write
    await mysql(
      db,
      `INSERT INTO cell_mappings (created_at, uuid, name, transport_url, database_connection, disabled) VALUES ` +
        `(NOW(), '00000000-0000-0000-0000-000000000000', 'cell0', 'none:///', '${sqlalchemyUrl(db, names.cell0)}', 0), ` +
        `(NOW(), '${randomUUID()}', 'cell1', '${transportUrl}', '${sqlalchemyUrl(db, names.cell1)}', 0)`,
      names.api,
    );
    const schemaMs = performance.now() - tSchema;

    const tStart = performance.now();
    for (const s of ['placement', 'conductor', 'scheduler', 'api'] as const) spawnService(s);
    // nova-compute once libvirtd answers (ensured above) — it is the heavy one, start it now too
    spawnService('compute');
    let deadline = Date.now() + 180_000;
    for (;;) {
      alive(deadline, 'the API answering');
      const ok = await api('GET', '/').then((r) => r.status === 200, () => false);
      const placementOk = await placement('/').then((r) => r.status === 200, () => false);
      if (ok && placementOk) break;
      await sleep(200);
    }
    const apiMs = performance.now() - tStart;

    deadline = Date.now() + 180_000;
    for (;;) {
      alive(deadline, 'nova-compute up, mapped and in Placement');
      const services = await api<{ services: Array<{ binary: string; state: string; host: string }> }>('GET', '/os-services?binary=nova-compute').catch(() => undefined);
      const up = services?.status === 200 && services.body.services.some((s) => s.host === host && s.state === 'up');
      const mapped = up && Number(await sql('nova_api', `SELECT COUNT(*) FROM host_mappings WHERE host = '${host}'`)) > 0;
      const inventory =
        mapped &&
        (await placement('/resource_providers').then(async (r) => {
          const rps = (r.body?.resource_providers as Array<{ uuid: string }> | undefined) ?? [];
          for (const rp of rps) {
            const inv = await placement(`/resource_providers/${rp.uuid}/inventories`);
            if ((inv.body?.inventories as Record<string, unknown> | undefined)?.VCPU) return true;
          }
          return false;
        }));
      if (inventory) break;
      await sleep(250);
    }
    const computeMs = performance.now() - tStart;

    const flavor = await api('POST', '/flavors', { body: { flavor: { name: 'tether-nova', id: 'tether-nova', ram: 64, vcpus: 1, disk: 0 } } });
    if (flavor.status !== 200) throw new Error(`creating the flavor: ${flavor.status} ${JSON.stringify(flavor.body)}`);

    const waitServer = async (serverId: string, status: string | string[], timeoutMs = 120_000): Promise<Record<string, unknown>> => {
      const wanted = Array.isArray(status) ? status : [status];
      const until = Date.now() + timeoutMs;
      let last: unknown;
      for (;;) {
        const r = await api<{ server: Record<string, unknown> }>('GET', `/servers/${serverId}`, { microversion: '2.37' });
        last = r.body;
        if (r.status === 200) {
          const s = r.body.server;
          if (wanted.includes(String(s.status)) && !s['OS-EXT-STS:task_state']) return s;
          if (s.status === 'ERROR' && !wanted.includes('ERROR')) throw new Error(`server ${serverId} went to ERROR: ${JSON.stringify(s.fault ?? {})}`);
        } else if (r.status === 404 && wanted.includes('DELETED')) {
          return { status: 'DELETED' };
        }
        if (Date.now() > until) throw new Error(`server ${serverId} not ${wanted.join('/')} within ${timeoutMs / 1000} s: ${JSON.stringify(last).slice(0, 500)}`);
        await sleep(200);
      }
    };

    const handle: NovaHandle = {
      id,
      url: `http://127.0.0.1:${apiPort}`,
      projectId,
      token,
      host,
      stateDir,
      timings: { schemaMs, schemaFromCache, apiMs, computeMs, totalMs: performance.now() - t0 },
      cinder,
      neutronCalls,
      api,
      waitServer,
      async createServer(name) {
        const volume = await cinder.api<{ volume: { id: string } }>('POST', '/volumes', { volume: { size: 1, name: `${name}-root` } });
        if (volume.status !== 202) throw new Error(`boot volume: ${volume.status} ${JSON.stringify(volume.body)}`);
        const vid = volume.body.volume.id;
        for (const until = Date.now() + 60_000; ; ) {
          const v = await cinder.api<{ volume: { status: string } }>('GET', `/volumes/${vid}`);
          if (v.body.volume.status === 'available') break;
          if (v.body.volume.status === 'error' || Date.now() > until) throw new Error(`boot volume ${vid}: ${v.body.volume.status}`);
          await sleep(50);
        }
        // Nova refuses a volume that is not bootable; the bus comes from the volume's image metadata
        // (virtio-scsi: an unplug completes on a guest without an OS, a virtio-blk one never does)
        for (const action of [{ 'os-set_bootable': { bootable: true } }, { 'os-set_image_metadata': { metadata: { hw_disk_bus: 'scsi', hw_scsi_model: 'virtio-scsi' } } }]) {
          const r = await cinder.api('POST', `/volumes/${vid}/action`, action);
          if (r.status !== 200) throw new Error(`boot volume ${vid} ${Object.keys(action)[0]}: ${r.status} ${JSON.stringify(r.body)}`);
        }
        const created = await api<{ server: { id: string } }>('POST', '/servers', {
          microversion: '2.37',
          body: {
            server: {
              name,
              flavorRef: 'tether-nova',
              networks: 'none',
              block_device_mapping_v2: [{ uuid: vid, source_type: 'volume', destination_type: 'volume', boot_index: 0, delete_on_termination: true }],
            },
          },
        });
        if (created.status !== 202) throw new Error(`POST /servers: ${created.status} ${JSON.stringify(created.body)}`);
        const server = await waitServer(created.body.server.id, 'ACTIVE');
        return { id: created.body.server.id, name, bootVolumeId: vid, domainName: String(server['OS-EXT-SRV-ATTR:instance_name']) };
      },
      async deleteServer(serverId) {
        const r = await api('DELETE', `/servers/${serverId}`);
        if (r.status !== 204 && r.status !== 404) throw new Error(`DELETE /servers/${serverId}: ${r.status} ${JSON.stringify(r.body)}`);
        await waitServer(serverId, 'DELETED');
      },
      sql,
      pid: (service) => {
        const c = children.get(service);
        return c && isRunning(c) ? c.pid : undefined;
      },
      pids: () => [...children.values()].filter(isRunning).map((c) => c.pid!),
      rssMiB: () => Object.fromEntries([...children].map(([s, c]) => [s, isRunning(c) ? rssMiB(c.pid) : 0])) as Record<NovaService, number>,
      async killCompute() {
        const c = children.get('compute');
        if (!c || !isRunning(c)) return;
        const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
        c.kill('SIGKILL');
        await exited;
      },
      async restartCompute() {
        const c = children.get('compute');
        if (c && isRunning(c)) throw new Error('nova-compute is running');
        const child = spawnService('compute');
        const until = Date.now() + 180_000;
        for (;;) {
          if (!isRunning(child)) throw new Error(`nova-compute exited on restart:\n${tail(logFile('compute'))}`);
          if (options.pauseDir ? fs.existsSync(path.join(options.pauseDir, `ready.${child.pid}`)) : true) break;
          if (Date.now() > until) throw new Error('nova-compute did not start serving within 180 s');
          await sleep(50);
        }
      },
      logFile,
      async stop() {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
    return handle;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

// ---- command line: start a Cinder and a Nova, wait for Ctrl-C ----

async function main(): Promise<void> {
  const { cinderAvailability, startCinder } = await import('./cinder.ts');
  for (const availability of [await cinderAvailability('single'), await novaAvailability()]) {
    if (!availability.available) {
      console.error(availability.reason);
      process.exit(1);
    }
  }
  const cinder = await startCinder({ mode: 'single', driver: 'loop' });
  let nova: NovaHandle;
  try {
    nova = await startNova({ cinder });
  } catch (err) {
    await cinder.stop();
    throw err;
  }
  const t = nova.timings;
  console.log(
    `# Nova ready in ${Math.round(t.totalMs)} ms (schemas ${Math.round(t.schemaMs)} ms${t.schemaFromCache ? ' from cache' : ' by db sync'}, API ${Math.round(t.apiMs)} ms, compute ${Math.round(t.computeMs)} ms); ` +
      `logs in ${nova.stateDir}/log; Cinder (loop devices) at ${cinder.endpoint}`,
  );
  console.log(`export OS_COMPUTE_URL=${nova.url}/v2.1 OS_TOKEN=${nova.token}`);
  console.log(`# e.g. curl -s -H "X-Auth-Token: $OS_TOKEN" -H "OpenStack-API-Version: compute 2.89" $OS_COMPUTE_URL/servers`);
  for (const [k, v] of Object.entries(cinder.env)) console.log(`export ${k}=${v}`);
  if (process.argv.includes('--server')) {
    const server = await nova.createServer('vm1');
    console.log(`# server vm1 ${server.id} ACTIVE (domain ${server.domainName}, boot volume ${server.bootVolumeId})`);
  }
  console.log('# Ctrl-C stops both and removes their databases, vhost, domains and files.');
  const stop = async () => {
    await nova.stop();
    await cinder.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
