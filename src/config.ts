/**
 * All configuration, read from environment variables in one place.
 * Every variable is documented in README.md ("Configuration"); defaults suit the embedded stack.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

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
  /** Temporal frontend; when TEMPORAL_ADDRESS is set the stack starts no dev server. */
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
  /** Default disk bus for new instances (their guests decide which unplugs work; scsi is safe for OS-less domains). */
  defaultDiskBus: 'scsi' | 'virtio';
  availabilityZone: string;
  apiHost: string;
  apiPort: number;
  logLevel: string;
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
    availabilityZone: str('TETHER_AVAILABILITY_ZONE', 'nova'),
    apiHost: str('TETHER_API_HOST', '127.0.0.1'),
    apiPort: int('TETHER_API_PORT', 8774),
    logLevel: str('TETHER_LOG_LEVEL', 'info'),
  };
}

export { instanceTaskQueue, hostTaskQueue } from './domain/task-queues.ts';
