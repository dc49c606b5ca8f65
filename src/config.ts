/**
 * All configuration, read from environment variables in one place.
 * Every variable is documented in README.md ("Configuration"); defaults suit the embedded stack.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { DomainTemplate } from './libvirt/domain-xml.ts';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function str(name: string, fallback: string): string {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

function int(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

function optional(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

export interface TetherConfig {
  /** Folder for all embedded state: Temporal's SQLite file, PostgreSQL data, volume files. */
  dataDir: string;
  /** Folder where volume files of the embedded volume service live. */
  volumeDir: string;
  /** Temporal frontend (host:port), or several separated by commas (a cluster: src/temporal/frontend-relay.ts fails over between them); when TEMPORAL_ADDRESS is set the stack starts no dev server. */
  temporalAddress: string;
  temporalAddressFromEnv: boolean;
  temporalNamespace: string;
  temporalPort: number;
  temporalUiPort: number;
  /** Path of the Temporal CLI binary (built by scripts/build-temporal.sh). */
  temporalBinary: string;
  /** PostgreSQL; when DATABASE_URL is set the stack starts no embedded server. */
  databaseUrl: string;
  databaseUrlFromEnv: boolean;
  embeddedPgPort: number;
  /** Task queue of the control-plane worker (workflows and control-plane activities). */
  controlTaskQueue: string;
  /** Name of this compute host (compute agent) and the default host for new servers. */
  computeHost: string;
  libvirtUri: string;
  /** How long a force detach waits for the instance's host to detach the disk itself before it fences the host. */
  forceDetachHostWaitSeconds: number;
  /** How long an attach's answer (the reservation) waits for Temporal before it is a 503 with Retry-After (src/service/attach-reservation.ts). */
  attachAnswerWaitMs: number;
  /** Default disk bus for new instances (their guests decide which unplugs work; scsi is safe for OS-less domains). */
  defaultDiskBus: 'scsi' | 'virtio';
  availabilityZone: string;
  apiHost: string;
  apiPort: number;
  logLevel: string;
  /** TETHER_STARTUP_WAIT_SECONDS: how long a starting process waits for PostgreSQL and Temporal to answer (0: fail at once). */
  startupWaitMs: number;
  /** TLS to the Temporal frontend (TEMPORAL_TLS, TEMPORAL_TLS_CA/CERT/KEY/SERVER_NAME); files are read at connect time. */
  temporalTls: TemporalTlsSettings;
  /** TEMPORAL_API_KEY: sent as `Authorization: Bearer …` on every Temporal call (implies TLS unless TEMPORAL_TLS=false). */
  temporalApiKey: string | undefined;
}

/** How tether reaches a Temporal frontend that wants TLS (and maybe a client certificate). */
export interface TemporalTlsSettings {
  /** Use TLS at all: TEMPORAL_TLS, or implied by any other TLS setting or by TEMPORAL_API_KEY. */
  enabled: boolean;
  /** TEMPORAL_TLS_CA: PEM file of the CA that signed the server's certificate; the system roots when unset. */
  caFile: string | undefined;
  /** TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY: PEM client certificate pair for mTLS (both or neither). */
  certFile: string | undefined;
  keyFile: string | undefined;
  /** TEMPORAL_TLS_SERVER_NAME: the name to verify the server's certificate against (and SNI) instead of the address's host. */
  serverName: string | undefined;
}

function bool(name: string): boolean | undefined {
  const raw = optional(name);
  if (raw === undefined) return undefined;
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new Error(`${name} must be true or false, got ${JSON.stringify(raw)}`);
}

/** Reads and checks the Temporal TLS / API key variables (the files themselves are read at connect time). */
export function loadTemporalTls(): { temporalTls: TemporalTlsSettings; temporalApiKey: string | undefined } {
  const explicit = bool('TEMPORAL_TLS');
  const caFile = optional('TEMPORAL_TLS_CA');
  const certFile = optional('TEMPORAL_TLS_CERT');
  const keyFile = optional('TEMPORAL_TLS_KEY');
  const serverName = optional('TEMPORAL_TLS_SERVER_NAME');
  const temporalApiKey = optional('TEMPORAL_API_KEY');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const [set, unset] = certFile !== undefined ? ['TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY'] : ['TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_CERT'];
    throw new Error(`${set} is set but ${unset} is not: a client certificate for mTLS needs both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (or neither)`);
  }
  const tlsOnly = (
    [
      ['TEMPORAL_TLS_CA', caFile],
      ['TEMPORAL_TLS_CERT', certFile],
      ['TEMPORAL_TLS_KEY', keyFile],
      ['TEMPORAL_TLS_SERVER_NAME', serverName],
    ] as const
  )
    .filter(([, v]) => v !== undefined)
    .map(([name]) => name);
  if (explicit === false && tlsOnly.length > 0) {
    throw new Error(`TEMPORAL_TLS=false contradicts ${tlsOnly.join(', ')}: unset ${tlsOnly.length > 1 ? 'them' : 'it'} or remove TEMPORAL_TLS=false`);
  }
  return {
    temporalTls: {
      enabled: explicit ?? (tlsOnly.length > 0 || temporalApiKey !== undefined),
      caFile,
      certFile,
      keyFile,
      serverName,
    },
    temporalApiKey,
  };
}

/** Whether users other than the owner (QEMU's libvirt-qemu, PostgreSQL's postgres) can reach `dir`. */
function traversableByOthers(dir: string): boolean {
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      if ((fs.statSync(d).mode & 0o001) === 0) return false;
    } catch {
      // not created yet: nothing to check
    }
    if (d === path.dirname(d)) return true;
  }
}

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8);
}

/**
 * `.data` in the checkout, unless root runs a checkout that other users cannot reach (e.g. under
 * /root, mode 0700): QEMU (as libvirt-qemu) and the embedded PostgreSQL (as postgres) could not
 * open their files there, so the state goes to /var/lib/tether/<hash of the checkout path>.
 */
function defaultDataDir(): string {
  if (process.getuid?.() !== 0 || traversableByOthers(projectRoot)) return path.join(projectRoot, '.data');
  return `/var/lib/tether/data-${shortHash(projectRoot)}`;
}

/** Volume files must be reachable by QEMU: an explicit data folder that is not gets libvirt's image folder. */
function defaultVolumeDir(dataDir: string): string {
  return traversableByOthers(path.dirname(dataDir)) ? path.join(dataDir, 'volumes') : `/var/lib/libvirt/images/tether-${shortHash(dataDir)}`;
}

export function temporalCacheDir(): string {
  return str('TETHER_CACHE_DIR', path.join(os.homedir(), '.cache', 'tether'));
}

export const TEMPORAL_CLI_VERSION = '1.5.1';

/**
 * OpenTelemetry tracing, by the standard OTEL_* variables. Tracing is on when an OTLP endpoint is
 * set (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT) and OTEL_SDK_DISABLED
 * is not true; the exporter itself reads the rest (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, OTEL_BSP_*).
 */
export interface TracingSettings {
  /** Where spans go; undefined: tracing off (no provider, no interceptors, no spans). */
  endpoint: string | undefined;
  /** OTEL_SERVICE_NAME; each process has its own default (tether-api, tether-control-plane, …). */
  serviceName: string | undefined;
}

export function loadTracingSettings(): TracingSettings {
  const endpoint = optional('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? optional('OTEL_EXPORTER_OTLP_ENDPOINT');
  return { endpoint: bool('OTEL_SDK_DISABLED') === true ? undefined : endpoint, serviceName: optional('OTEL_SERVICE_NAME') };
}

export function loadConfig(): TetherConfig {
  const dataDir = path.resolve(str('TETHER_DATA_DIR', defaultDataDir()));
  const temporalPort = int('TETHER_TEMPORAL_PORT', 7233);
  const embeddedPgPort = int('TETHER_PG_PORT', 55432);
  const temporalAddress = optional('TEMPORAL_ADDRESS');
  const databaseUrl = optional('DATABASE_URL');
  const bus = str('TETHER_DEFAULT_DISK_BUS', 'scsi');
  if (bus !== 'scsi' && bus !== 'virtio') throw new Error(`TETHER_DEFAULT_DISK_BUS must be scsi or virtio, got ${bus}`);
  return {
    dataDir,
    volumeDir: path.resolve(str('TETHER_VOLUME_DIR', defaultVolumeDir(dataDir))),
    temporalAddress: temporalAddress ?? `127.0.0.1:${temporalPort}`,
    temporalAddressFromEnv: temporalAddress !== undefined,
    temporalNamespace: str('TEMPORAL_NAMESPACE', 'default'),
    temporalPort,
    temporalUiPort: int('TETHER_TEMPORAL_UI_PORT', 8233),
    temporalBinary: str('TETHER_TEMPORAL_BIN', path.join(temporalCacheDir(), 'bin', `temporal-${TEMPORAL_CLI_VERSION}`, 'temporal')),
    databaseUrl: databaseUrl ?? `postgres://postgres:tether@127.0.0.1:${embeddedPgPort}/tether`,
    databaseUrlFromEnv: databaseUrl !== undefined,
    embeddedPgPort,
    controlTaskQueue: str('TETHER_CONTROL_TASK_QUEUE', 'tether-control'),
    computeHost: str('TETHER_COMPUTE_HOST', 'compute-1'),
    libvirtUri: str('LIBVIRT_URI', 'qemu:///system'),
    defaultDiskBus: bus,
    forceDetachHostWaitSeconds: int('TETHER_FORCE_DETACH_HOST_WAIT_SECONDS', 30),
    attachAnswerWaitMs: int('TETHER_ATTACH_ANSWER_WAIT_MS', 30_000),
    availabilityZone: str('TETHER_AVAILABILITY_ZONE', 'nova'),
    apiHost: str('TETHER_API_HOST', '127.0.0.1'),
    apiPort: int('TETHER_API_PORT', 8774),
    logLevel: str('TETHER_LOG_LEVEL', 'info'),
    startupWaitMs: int('TETHER_STARTUP_WAIT_SECONDS', 120) * 1000,
    ...loadTemporalTls(),
  };
}

/**
 * What the compute agent puts into every domain it defines (TETHER_DOMAIN_*). Unset: the 64 MiB
 * OS-less domain. TETHER_DOMAIN_KERNEL (+ _INITRD, _CMDLINE): a guest booted directly from that
 * kernel (128 MiB unless TETHER_DOMAIN_MEMORY_MIB says otherwise); TETHER_DOMAIN_CONSOLE_DIR: its
 * serial console on `<dir>/<instance uuid>.sock` (the folder must be writable by QEMU's user).
 */
export function loadDomainTemplate(): DomainTemplate {
  const kernel = optional('TETHER_DOMAIN_KERNEL');
  const initrd = optional('TETHER_DOMAIN_INITRD');
  const cmdline = optional('TETHER_DOMAIN_CMDLINE');
  const consoleDir = optional('TETHER_DOMAIN_CONSOLE_DIR');
  const memoryMiB = optional('TETHER_DOMAIN_MEMORY_MIB') === undefined ? undefined : int('TETHER_DOMAIN_MEMORY_MIB', 0);
  if (memoryMiB === 0) throw new Error('TETHER_DOMAIN_MEMORY_MIB must be a positive number of MiB');
  if (!kernel && (initrd || cmdline)) throw new Error('TETHER_DOMAIN_INITRD and TETHER_DOMAIN_CMDLINE need TETHER_DOMAIN_KERNEL (the kernel they go with)');
  for (const [name, file] of [
    ['TETHER_DOMAIN_KERNEL', kernel],
    ['TETHER_DOMAIN_INITRD', initrd],
    ['TETHER_DOMAIN_CONSOLE_DIR', consoleDir],
  ] as const) {
    if (file === undefined) continue;
    if (!path.isAbsolute(file)) throw new Error(`${name} must be an absolute path (QEMU opens it), got ${JSON.stringify(file)}`);
    if (!fs.existsSync(file)) throw new Error(`${name}: ${file} does not exist`);
  }
  return {
    ...(memoryMiB !== undefined ? { memoryMiB } : {}),
    ...(kernel ? { boot: { kernel, ...(initrd ? { initrd } : {}), ...(cmdline ? { cmdline } : {}) } } : {}),
    ...(consoleDir ? { consoleDir } : {}),
  };
}

/** Nova-style notifications (src/notifications/): where the control plane publishes the outbox. */
export interface NotificationSettings {
  /** TETHER_NOTIFICATIONS: `log` (default), `none`, or an `amqp://` / `amqps://` URL. */
  sink: string;
  /** TETHER_NOTIFICATIONS_RETENTION: how long published rows stay in the outbox (default 7d). */
  retentionMs: number;
  /** TETHER_NOTIFICATIONS_EXCHANGE / _TOPIC: Nova's control_exchange and versioned notification topic. */
  exchange: string;
  topic: string;
}

const DURATION_UNITS_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function loadNotificationSettings(): NotificationSettings {
  const sink = str('TETHER_NOTIFICATIONS', 'log');
  if (sink !== 'log' && sink !== 'none' && !/^amqps?:\/\/./.test(sink)) {
    throw new Error('TETHER_NOTIFICATIONS must be log, none or an amqp:// (amqps://) URL');
  }
  const retention = str('TETHER_NOTIFICATIONS_RETENTION', '7d');
  const m = /^(\d+)([smhd]?)$/.exec(retention.trim());
  if (!m) throw new Error(`TETHER_NOTIFICATIONS_RETENTION must be a number with an optional unit s, m, h or d (e.g. 7d), got ${JSON.stringify(retention)}`);
  return {
    sink,
    retentionMs: Number(m[1]) * DURATION_UNITS_MS[m[2] || 's']!,
    exchange: str('TETHER_NOTIFICATIONS_EXCHANGE', 'nova'),
    topic: str('TETHER_NOTIFICATIONS_TOPIC', 'versioned_notifications'),
  };
}

export { instanceTaskQueue, hostTaskQueue } from './domain/task-queues.ts';
