/**
 * A real Cinder (Debian's cinder-api / cinder-scheduler / cinder-volume, OpenStack 2023.1) for the
 * integration tests, started from a state folder of its own:
 *
 *   - MariaDB database `cinder_<id>` (mysql+pymysql). `cinder-manage db sync` runs once per Cinder
 *     version; its result is cached as an SQL dump (~/.cache/tether/cinder/) and loaded in ~0.4 s.
 *   - mode 'single' (default): scheduler, volume and the osapi_volume WSGI service in ONE Python process
 *     (oslo.service ServiceLauncher) over the in-memory `fake://` transport — no broker, one process.
 *     mode 'multi': the three Debian daemons as separate processes over RabbitMQ (a vhost of their own,
 *     created with rabbitmqctl, so parallel test files never share queues).
 *   - auth_strategy noauth (`X-Auth-Token: <user>:<project_id>`), a random 32-hex project id; a request
 *     without a token is served anonymously (openstacksdk's version discovery needs that).
 *   - backend `fake`: driver 'file' (default) is cinder.tests.fake_driver.FakeLoggingVolumeDriver plus
 *     a sparse raw file per volume and `file` connection_info, so QEMU can really attach the volume;
 *     driver 'fake' is FakeLoggingVolumeDriver itself (its iscsi connection_info has no target: API-only tests).
 *
 * Ready means: the API answers, os-services shows cinder-scheduler and cinder-volume up, and a probe
 * volume went creating → available → deleted. `stop()` ends the processes (SIGTERM, then SIGKILL),
 * drops the database and removes the folders.
 *
 * Also a command: `node --import tsx test/support/cinder.ts` (scripts/start-cinder.sh) starts one and
 * prints the environment that points tether at it.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '../../stack/free-port.ts';
import { loadCinderConfig, type CinderConfig } from '../../src/blockstorage/cinder/config.ts';
import {
  addVhost,
  cacheDir,
  deleteVhost,
  descendants,
  ini,
  isRunning,
  loadDump,
  loopDevicesUnder,
  migrationsKey,
  mysql,
  mysqlTarget,
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

const CINDER_PY = '/usr/lib/python3/dist-packages/cinder';
const VOLUME_ROOT = process.env.TETHER_TEST_VOLUME_DIR ?? '/var/lib/libvirt/images/tether-test';

export type CinderMode = 'single' | 'multi';
/**
 * file: FakeLoggingVolumeDriver + a sparse raw file per volume (`file` connection_info: tether attaches it);
 * loop: a sparse file behind a loop device (`local` connection_info with device_path: tether and a real
 *   Nova both attach it as a block device; test/support/python/tether_loop_driver.py);
 * fake: FakeLoggingVolumeDriver as is (iscsi connection_info without a target: API-only tests).
 */
export type CinderDriver = 'file' | 'loop' | 'fake';

export interface CinderOptions {
  mode?: CinderMode;
  driver?: CinderDriver;
  /** Where the file driver puts volume files (QEMU must reach it). Default: $TETHER_TEST_VOLUME_DIR/cinder-<id>. */
  volumeDir?: string;
  /** Extra [DEFAULT] options. */
  extraDefaults?: Record<string, string | number>;
  /** Skip the probe volume (ready = services up). */
  probe?: boolean;
  /** Put this value into every connection_info (data.auth_password) to prove it never reaches logs. */
  fakeSecret?: string;
  /**
   * Cinder's [nova] section: the compute API it tells about volumes it extended (os-server-external-events,
   * volume-extended), e.g. tether's http://127.0.0.1:PORT/v2.1. Cinder's nova client then authenticates
   * with keystoneauth's `none` plugin and this endpoint (the API runs without Keystone).
   */
  novaEndpoint?: string;
}

export interface CinderTimings {
  /** Database created and its schema loaded (or db sync run). */
  schemaMs: number;
  /** Process(es) spawned until the API answered. */
  apiMs: number;
  /** …until cinder-scheduler and cinder-volume reported up. */
  servicesMs: number;
  /** Probe volume: create → available → deleted. */
  probeMs: number;
  totalMs: number;
  schemaFromCache: boolean;
}

export interface CinderHandle {
  id: string;
  mode: CinderMode;
  driver: CinderDriver;
  port: number;
  /** http://127.0.0.1:PORT/v3/<project> */
  endpoint: string;
  projectId: string;
  user: string;
  /** Environment that selects this Cinder for tether. */
  env: Record<string, string>;
  /** tether's Cinder configuration for this Cinder. */
  config(overrides?: Record<string, string>): CinderConfig;
  stateDir: string;
  volumeDir: string;
  logFiles: string[];
  timings: CinderTimings;
  /** Resident memory of the Cinder processes, in MiB. */
  rssMiB(): number;
  /** pids of the Cinder processes and their children (for CPU sampling). */
  pids(): number[];
  /** A raw call with this Cinder's credentials (microversion 3.44 unless told), for checks in tests. */
  api<T = unknown>(method: string, pathAndQuery: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: T }>;
  stop(): Promise<void>;
}

// ---- availability ----

export function defaultMode(): CinderMode {
  return process.env.TETHER_TEST_CINDER_MODE === 'multi' ? 'multi' : 'single';
}

/** Whether a Cinder can be started here, and if not, why (the skip message). */
export async function cinderAvailability(mode: CinderMode = defaultMode()): Promise<{ available: boolean; reason: string }> {
  const missing: string[] = [];
  for (const [file, what] of [
    ['/usr/bin/cinder-manage', 'cinder-manage (Debian package cinder-common)'],
    [`${CINDER_PY}/tests/fake_driver.py`, 'cinder.tests.fake_driver (python3-cinder)'],
    ['/usr/lib/python3/dist-packages/pymysql', 'python3-pymysql'],
    ['/usr/bin/mysql', 'the mysql client (mariadb-client)'],
    ...(mode === 'multi'
      ? [
          ['/usr/bin/cinder-api', 'cinder-api'],
          ['/usr/bin/cinder-scheduler', 'cinder-scheduler'],
          ['/usr/bin/cinder-volume', 'cinder-volume'],
          ['/usr/sbin/rabbitmqctl', 'rabbitmqctl'],
        ]
      : []),
  ] as const) {
    if (!fs.existsSync(file)) missing.push(what);
  }
  if (missing.length > 0) {
    return {
      available: false,
      reason: `no Cinder here: missing ${missing.join(', ')} (\`npm test\` installs them: scripts/test-deps/cinder.sh and mariadb.sh)`,
    };
  }
  const db = mysqlTarget();
  const noDb = await tcpMissing(db.host, db.port);
  if (noDb) {
    return { available: false, reason: `no Cinder here: MariaDB: ${noDb} (TETHER_TEST_CINDER_MYSQL_URL; \`npm test\` starts one: scripts/test-deps/mariadb.sh)` };
  }
  if (mode === 'multi') {
    const r = new URL(rabbitUrl().replace(/^rabbit:/, 'amqp:'));
    const noRabbit = await tcpMissing(r.hostname, Number(r.port || 5672));
    if (noRabbit) return { available: false, reason: `no Cinder here: RabbitMQ: ${noRabbit}` };
  }
  return { available: true, reason: 'ok' };
}

// ---- files written into the state folder ----

const API_PASTE = `[composite:osapi_volume]
use = call:cinder.api:root_app_factory
/: apiversions
/v3: openstack_volume_api_v3

[composite:openstack_volume_api_v3]
use = call:cinder.api.middleware.auth:pipeline_factory
noauth = request_id faultwrap sizelimit noauth apiv3

[filter:request_id]
paste.filter_factory = cinder.api.middleware.request_id:RequestId.factory

[filter:faultwrap]
paste.filter_factory = cinder.api.middleware.fault:FaultWrapper.factory

[filter:noauth]
paste.filter_factory = tether_noauth:NoAuthMiddleware.factory

[filter:sizelimit]
paste.filter_factory = oslo_middleware.sizelimit:RequestBodySizeLimiter.factory

[app:apiv3]
paste.app_factory = cinder.api.v3.router:APIRouter.factory

[pipeline:apiversions]
pipeline = request_id faultwrap osvolumeversionapp

[app:osvolumeversionapp]
paste.app_factory = cinder.api.versions:Versions.factory
`;

/**
 * Cinder's NoAuthMiddleware answers a request without X-Auth-Token with a fake token (204) instead of
 * serving it; openstacksdk's version discovery (GET /v3, never authenticated) then finds no document.
 * This one serves such requests as an anonymous user, so the Debian clients work with noauth too.
 *
 * It also stands in for keystonemiddleware's service-token check: requests of the user `nova` (a real
 * Nova sharing this Cinder, test/support/nova.ts) carry the service role, as Nova's service token gives
 * them under Keystone. Cinder needs it to delete an attachment that is still attached (CVE-2023-2088);
 * tether's own client sends X-Service-Roles itself.
 */
const NOAUTH = `"""Cinder's NoAuthMiddleware, but a request without X-Auth-Token is served anonymously (tether tests)."""
from cinder.api.middleware import auth

SERVICE_USERS = ('nova',)


class NoAuthMiddleware(auth.NoAuthMiddleware):
    def base_call(self, req, project_id_in_path=False):
        if 'X-Auth-Token' not in req.headers:
            req.headers['X-Auth-Token'] = 'anonymous:anonymous'
        elif req.headers['X-Auth-Token'].partition(':')[0] in SERVICE_USERS:
            req.headers['X-Service-Roles'] = 'service'
        return super(NoAuthMiddleware, self).base_call(req, project_id_in_path)
`;

const VOLUME_DRIVERS: Record<CinderDriver, string> = {
  file: 'tether_file_driver.TetherFileDriver',
  loop: 'tether_loop_driver.TetherLoopDriver',
  fake: 'cinder.tests.fake_driver.FakeLoggingVolumeDriver',
};

/** All three services in one process, so the in-memory fake:// transport connects them. */
const LAUNCHER = `"""cinder-scheduler, cinder-volume and the osapi_volume WSGI service in ONE process (tether tests)."""
import eventlet
eventlet.monkey_patch()
import __original_module_threading as orig_threading  # noqa
import threading  # noqa
orig_threading.current_thread.__globals__['_active'] = threading._active

import logging as python_logging
import shlex
import sys

import os_brick
from oslo_config import cfg
from oslo_log import log as logging
from oslo_privsep import priv_context
from oslo_service import service as oslo_service

from cinder import i18n
i18n.enable_lazy()
from cinder.common import config
from cinder.common import constants
from cinder import coordination
from cinder import objects
from cinder import rpc
from cinder import service
from cinder import utils
from cinder import version

CONF = cfg.CONF


def main():
    objects.register_all()
    CONF(sys.argv[1:], project='cinder', version=version.version_string())
    config.set_middleware_defaults()
    logging.setup(CONF, 'cinder')
    python_logging.captureWarnings(True)
    priv_context.init(root_helper=shlex.split(utils.get_root_helper()))
    utils.monkey_patch()
    os_brick.setup(CONF)
    coordination.COORDINATOR.start()
    rpc.init(CONF)
    launcher = oslo_service.ServiceLauncher(CONF, restart_method='mutate')
    launcher.launch_service(service.Service.create(binary=constants.SCHEDULER_BINARY))
    for backend in filter(None, CONF.enabled_backends):
        launcher.launch_service(service.Service.create(
            host='%s@%s' % (CONF.host, backend), service_name=backend,
            binary=constants.VOLUME_BINARY, coordination=True))
    launcher.launch_service(service.WSGIService('osapi_volume'), workers=1)
    launcher.wait()


if __name__ == '__main__':
    main()
`;

/** FakeLoggingVolumeDriver whose volumes are sparse raw files that QEMU can open. */
const FILE_DRIVER = `"""FakeLoggingVolumeDriver + a sparse raw file per volume and 'file' connection_info (tether tests)."""
import os

from cinder.tests.fake_driver import FakeLoggingVolumeDriver


class TetherFileDriver(FakeLoggingVolumeDriver):
    def _path(self, volume):
        return os.path.join(os.environ['TETHER_CINDER_VOLUME_DIR'], 'volume-%s.raw' % volume.id)

    def create_volume(self, volume):
        update = super(TetherFileDriver, self).create_volume(volume)
        os.makedirs(os.environ['TETHER_CINDER_VOLUME_DIR'], exist_ok=True)
        with open(self._path(volume), 'wb') as f:
            f.truncate(int(volume.size) * 1024 ** 3)
        return update

    def extend_volume(self, volume, new_size):
        # the raw file grows (a running QEMU holding it allows that); Cinder then tells Nova (volume-extended)
        with open(self._path(volume), 'r+b') as f:
            f.truncate(int(new_size) * 1024 ** 3)

    def delete_volume(self, volume):
        try:
            os.unlink(self._path(volume))
        except FileNotFoundError:
            pass

    def _update_volume_stats(self):
        super(TetherFileDriver, self)._update_volume_stats()
        for pool in self._stats['pools']:
            pool['multiattach'] = True  # raw files can be shared (QEMU <shareable/>)

    def initialize_connection(self, volume, connector):
        info = super(TetherFileDriver, self).initialize_connection(volume, connector)
        info['driver_volume_type'] = 'file'
        info['data'].update({'path': self._path(volume), 'format': 'raw',
                             'volume_id': volume.id, 'name': 'volume-%s' % volume.id})
        secret = os.environ.get('TETHER_CINDER_FAKE_SECRET')
        if secret:
            info['data']['auth_password'] = secret
        return info
`;

// ---- database ----

/** Creates the database with Cinder's schema: from the cached dump, or by db sync (then caches a dump). */
async function prepareDatabase(db: MysqlTarget, name: string, confFile: string, log: string): Promise<boolean> {
  await mysql(db, `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  const dump = path.join(cacheDir('cinder'), `schema-${migrationsKey([`${CINDER_PY}/db/migrations/versions`])}.sql`);
  if (fs.existsSync(dump)) {
    await loadDump(db, name, dump);
    return true;
  }
  await run('cinder-manage', ['--config-file', confFile, '--log-file', log, 'db', 'sync'], { timeout: 180_000 });
  await saveDump(db, name, dump);
  return false;
}

// ---- start ----

export async function startCinder(options: CinderOptions = {}): Promise<CinderHandle> {
  const t0 = performance.now();
  const mode = options.mode ?? defaultMode();
  const driver = options.driver ?? 'file';
  const id = randomBytes(4).toString('hex');
  const projectId = randomBytes(16).toString('hex');
  const user = 'tether';
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `tether-cinder-${id}-`));
  const volumeDir = options.volumeDir ?? path.join(VOLUME_ROOT, `cinder-${id}`);
  fs.mkdirSync(volumeDir, { recursive: true });
  for (const d of ['state', 'locks', 'coordination', 'log']) fs.mkdirSync(path.join(stateDir, d));
  const port = await findFreePort();
  const db = mysqlTarget();
  const dbName = `cinder_${id}`;
  const vhost = `tether_cinder_${id}`;

  const confFile = path.join(stateDir, 'cinder.conf');
  fs.writeFileSync(path.join(stateDir, 'api-paste.ini'), API_PASTE);
  fs.writeFileSync(path.join(stateDir, 'tether_cinder_launcher.py'), LAUNCHER);
  fs.writeFileSync(path.join(stateDir, 'tether_file_driver.py'), FILE_DRIVER);
  fs.writeFileSync(path.join(stateDir, 'tether_noauth.py'), NOAUTH);
  fs.writeFileSync(
    confFile,
    ini({
      DEFAULT: {
        debug: false,
        state_path: path.join(stateDir, 'state'),
        auth_strategy: 'noauth',
        api_paste_config: path.join(stateDir, 'api-paste.ini'),
        osapi_volume_listen: '127.0.0.1',
        osapi_volume_listen_port: port,
        osapi_volume_workers: 1,
        my_ip: '127.0.0.1',
        host: `tether-cinder-${id}`,
        enabled_backends: 'fake',
        transport_url: mode === 'single' ? 'fake://' : `${rabbitUrl()}/${vhost}`,
        rootwrap_config: '/etc/cinder/rootwrap.conf',
        storage_availability_zone: 'nova',
        default_availability_zone: 'nova',
        // the tests create many volumes; quotas are tested on a project of their own
        quota_volumes: -1,
        quota_gigabytes: -1,
        quota_snapshots: -1,
        quota_backups: -1,
        report_interval: 2,
        scheduler_driver_init_wait_time: 10,
        ...(options.extraDefaults ?? {}),
      },
      database: { connection: sqlalchemyUrl(db, dbName), max_pool_size: 10, max_overflow: 20 },
      coordination: { backend_url: `file://${path.join(stateDir, 'coordination')}` },
      oslo_concurrency: { lock_path: path.join(stateDir, 'locks') },
      ...(options.novaEndpoint ? { nova: { auth_type: 'none', endpoint: options.novaEndpoint, timeout: 30 } } : {}),
      fake: {
        volume_driver: VOLUME_DRIVERS[driver],
        target_helper: 'fake',
        volume_backend_name: 'fake',
      },
    }),
  );

  const children: ChildProcess[] = [];
  const logFiles: string[] = [];
  let dbCreated = false;
  let vhostCreated = false;
  const cleanup = async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    if (dbCreated) await mysql(db, `DROP DATABASE IF EXISTS \`${dbName}\``).catch(() => undefined);
    if (vhostCreated) await deleteVhost(vhost).catch(() => undefined);
    // the loop driver's devices of volumes nobody deleted
    for (const loop of await loopDevicesUnder(volumeDir)) await run('losetup', ['--detach', loop]).catch(() => undefined);
    fs.rmSync(stateDir, { recursive: true, force: true });
    fs.rmSync(volumeDir, { recursive: true, force: true });
  };

  try {
    const tSchema = performance.now();
    const vhostReady =
      mode === 'multi'
        ? (async () => {
            vhostCreated = true;
            await addVhost(vhost);
          })()
        : Promise.resolve();
    dbCreated = true;
    const [schemaFromCache] = await Promise.all([prepareDatabase(db, dbName, confFile, path.join(stateDir, 'log', 'db-sync.log')), vhostReady]);
    const schemaMs = performance.now() - tSchema;

    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONPATH: `${stateDir}:${PYTHON_DIR}`, TETHER_CINDER_VOLUME_DIR: volumeDir };
    delete env.PYTHONHOME;
    if (options.fakeSecret) env.TETHER_CINDER_FAKE_SECRET = options.fakeSecret;
    const spawnService = (name: string, command: string, args: string[]) => {
      const logFile = path.join(stateDir, 'log', `${name}.log`);
      logFiles.push(logFile);
      const child = spawnDaemon(command, [...args, '--config-file', confFile, '--log-file', logFile], { cwd: stateDir, env, outFile: path.join(stateDir, 'log', `${name}.out`) });
      children.push(child);
      return child;
    };
    const tStart = performance.now();
    if (mode === 'single') {
      spawnService('cinder', PYTHON, [path.join(stateDir, 'tether_cinder_launcher.py')]);
    } else {
      for (const s of ['api', 'scheduler', 'volume']) spawnService(`cinder-${s}`, `/usr/bin/cinder-${s}`, []);
    }

    const endpoint = `http://127.0.0.1:${port}/v3/${projectId}`;
    const api = async <T>(method: string, pathAndQuery: string, body?: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(`${endpoint}${pathAndQuery}`, {
        method,
        headers: {
          'X-Auth-Token': `${user}:${projectId}`,
          'OpenStack-API-Version': 'volume 3.44',
          Accept: 'application/json',
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
          ...headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(20_000),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        // keep the text
      }
      return { status: res.status, body: parsed as T };
    };

    const deadline = Date.now() + 120_000;
    const alive = () => {
      const dead = children.find((c) => !isRunning(c));
      if (dead) {
        const i = children.indexOf(dead);
        throw new Error(`Cinder process ${path.basename(logFiles[i]!, '.log')} exited (${dead.exitCode ?? dead.signalCode}):\n${tail(logFiles[i]!)}\n${tail(logFiles[i]!.replace(/\.log$/, '.out'), 10)}`);
      }
      if (Date.now() > deadline) throw new Error(`Cinder did not become ready within 120 s; logs in ${stateDir}/log:\n${logFiles.map((f) => tail(f, 10)).join('\n')}`);
    };
    // 1. the API answers
    for (;;) {
      alive();
      const ok = await api('GET', '/os-services').then((r) => r.status === 200, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const apiMs = performance.now() - tStart;
    // 2. scheduler and volume service up
    for (;;) {
      alive();
      const { body } = await api<{ services: Array<{ binary: string; state: string; status: string }> }>('GET', '/os-services');
      const up = (binary: string) => body.services.some((s) => s.binary === binary && s.state === 'up' && s.status === 'enabled');
      if (up('cinder-scheduler') && up('cinder-volume')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const servicesMs = performance.now() - tStart;
    // 3. the multiattach volume type tether uses for multiattach volumes
    const type = await api('POST', '/types', { volume_type: { name: 'multiattach', extra_specs: { multiattach: '<is> True' } } });
    if (type.status !== 200) throw new Error(`creating the multiattach volume type: ${type.status} ${JSON.stringify(type.body)}`);
    // 4. a probe volume goes through the scheduler to the driver and back
    const tProbe = performance.now();
    if (options.probe !== false) {
      // Until the volume service's first capability report reaches the scheduler, a create fails there
      // ("No valid backend was found", seen on a loaded machine): a probe that went to error is
      // deleted and tried again, within the start-up deadline.
      for (let attempt = 1; ; attempt++) {
        const created = await api<{ volume: { id: string } }>('POST', '/volumes', { volume: { size: 1, name: 'tether-probe' } });
        if (created.status !== 202) throw new Error(`probe volume: ${created.status} ${JSON.stringify(created.body)}`);
        const vid = created.body.volume.id;
        let status = '';
        for (;;) {
          alive();
          status = (await api<{ volume: { status: string } }>('GET', `/volumes/${vid}`)).body.volume.status;
          if (status === 'available' || status === 'error') break;
          await new Promise((r) => setTimeout(r, 50));
        }
        if (status === 'error' && attempt >= 10) throw new Error(`probe volume went to error ${attempt} times; log:\n${logFiles.map((f) => tail(f, 20)).join('\n')}`);
        await api('DELETE', `/volumes/${vid}`);
        for (;;) {
          alive();
          if ((await api('GET', `/volumes/${vid}`)).status === 404) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        if (status === 'available') break;
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
    const probeMs = performance.now() - tProbe;

    const tetherEnv: Record<string, string> = {
      TETHER_BLOCK_STORAGE: 'cinder',
      CINDER_ENDPOINT: endpoint,
      CINDER_AUTH: 'noauth',
      CINDER_NOAUTH_USER: user,
      CINDER_PROJECT_ID: projectId,
    };
    let stopped = false;
    return {
      id,
      mode,
      driver,
      port,
      endpoint,
      projectId,
      user,
      env: tetherEnv,
      config: (overrides = {}) => loadCinderConfig({ ...tetherEnv, ...overrides }),
      stateDir,
      volumeDir,
      logFiles,
      timings: { schemaMs, apiMs, servicesMs, probeMs, totalMs: performance.now() - t0, schemaFromCache },
      rssMiB: () => children.reduce((sum, c) => sum + rssMiB(c.pid), 0),
      pids: () => children.filter(isRunning).flatMap((c) => [c.pid!, ...descendants(c.pid!)]),
      api,
      async stop() {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

// ---- command line: start one and wait for Ctrl-C ----

async function main(): Promise<void> {
  const mode = (process.argv.includes('--multi') ? 'multi' : process.argv.includes('--single') ? 'single' : defaultMode()) satisfies CinderMode;
  const driver: CinderDriver = process.argv.includes('--fake-driver') ? 'fake' : process.argv.includes('--loop-driver') ? 'loop' : 'file';
  const availability = await cinderAvailability(mode);
  if (!availability.available) {
    console.error(availability.reason);
    process.exit(1);
  }
  const cinder = await startCinder({ mode, driver });
  const t = cinder.timings;
  console.log(`# Cinder (${mode}, driver ${driver}) ready in ${Math.round(t.totalMs)} ms (schema ${Math.round(t.schemaMs)} ms${t.schemaFromCache ? ' from cache' : ''}, API ${Math.round(t.apiMs)} ms, services ${Math.round(t.servicesMs)} ms, probe ${Math.round(t.probeMs)} ms); logs in ${cinder.stateDir}/log`);
  for (const [k, v] of Object.entries(cinder.env)) console.log(`export ${k}=${v}`);
  console.log('# Ctrl-C stops it and removes its database and files.');
  const stop = async () => {
    await cinder.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) void main();
