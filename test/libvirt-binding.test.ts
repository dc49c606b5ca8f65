/**
 * Integration tests of the libvirt binding against a real libvirtd (qemu:///system by default,
 * LIBVIRT_URI overrides). They define and start a tiny TCG domain, hot-plug a qcow2 disk on the
 * SCSI bus and always clean up after themselves.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LibvirtConnection,
  LibvirtError,
  VIR_ERR_INVALID_ARG,
  VIR_ERR_NO_DOMAIN,
  VIR_ERR_OPERATION_INVALID,
} from '../src/libvirt/binding.ts';
import { buildDiskXml } from '../src/libvirt/disk-xml.ts';
import { buildDomainXml, parseDomainDisks } from '../src/libvirt/domain-xml.ts';
import { libvirtMissing } from './support/probes.ts';
import { needs } from './support/skips.ts';

const URI = process.env.LIBVIRT_URI ?? 'qemu:///system';
// a folder the libvirt-qemu user can traverse (not under /root, which is 0700)
const IMAGES = '/var/lib/libvirt/images/tether-test';

const unavailable = await libvirtMissing(URI);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

describe(`libvirt binding on ${URI}`, needs('libvirt', unavailable), () => {
  const uuid = randomUUID();
  const name = `tether-test-${uuid.slice(0, 8)}`;
  let conn: LibvirtConnection;
  let dir: string;
  let image: string;

  beforeAll(async () => {
    mkdirSync(IMAGES, { recursive: true, mode: 0o755 });
    dir = mkdtempSync(join(IMAGES, 'run-'));
    chmodSync(dir, 0o755);
    image = join(dir, 'vol.qcow2');
    const r = spawnSync('qemu-img', ['create', '-f', 'qcow2', image, '16M'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`qemu-img create failed: ${r.stderr || r.error?.message}`);
    conn = await LibvirtConnection.open(URI);
  }, 30_000);

  afterAll(async () => {
    if (conn) {
      await conn.destroyDomain(uuid).catch((err) => console.warn('destroy failed', err));
      await conn.undefineDomain(uuid).catch((err) => console.warn('undefine failed', err));
      await conn.close();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  const diskXml = () => buildDiskXml({
    connectionInfo: { driver_volume_type: 'file', data: { path: image, format: 'qcow2' } },
    targetDev: 'sdb',
    bus: 'scsi',
    serial: 'vol-tether-test',
  });

  const disks = async (inactive: boolean) => parseDomainDisks(await conn.getXml(uuid, { inactive }));

  it('defines and starts a domain (starting twice is a no-op)', async () => {
    const defined = await conn.defineDomain(buildDomainXml({ uuid, name }));
    expect(defined).toEqual({ uuid, name, state: 'shutoff', active: false, persistent: true });
    await conn.startDomain(uuid);
    await conn.startDomain(uuid);
    expect(await conn.lookupDomain(uuid)).toEqual({ uuid, name, state: 'running', active: true, persistent: true });
    expect((await conn.listDomains()).map((d) => d.uuid)).toContain(uuid);
  }, 60_000);

  it('attaches a qcow2 file disk on the SCSI bus, live and persistent', async () => {
    await conn.attachDevice(uuid, diskXml(), { live: true, config: true });
    for (const inactive of [false, true]) {
      expect(await disks(inactive)).toEqual([
        expect.objectContaining({ target: 'sdb', bus: 'scsi', serial: 'vol-tether-test', sourceFile: image }),
      ]);
    }
  }, 30_000);

  it('grows the live disk with blockResize (QEMU resizes the qcow2 image) and reports it with blockInfo', async () => {
    const MiB = 1024 * 1024;
    expect(await conn.blockInfo(uuid, 'sdb')).toMatchObject({ capacity: 16 * MiB });
    await conn.blockResize(uuid, 'sdb', 32 * MiB);
    expect(await conn.blockInfo(uuid, 'sdb')).toMatchObject({ capacity: 32 * MiB });
    // the image itself grew (qemu-img reads it while QEMU holds it: -U)
    const info = JSON.parse(spawnSync('qemu-img', ['info', '-U', '--output=json', image], { encoding: 'utf8' }).stdout) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(32 * MiB);
    const err = await conn.blockInfo(uuid, 'sdz').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).code).toBe(VIR_ERR_INVALID_ARG);
    await expect(conn.blockResize(uuid, 'sdb', 0)).rejects.toThrow(RangeError);
  }, 30_000);

  it('refuses to attach the same target again with VIR_ERR_OPERATION_INVALID', async () => {
    const err = await conn.attachDevice(uuid, diskXml(), { live: true, config: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).code).toBe(VIR_ERR_OPERATION_INVALID);
    expect((err as LibvirtError).message).toMatch(/sdb already exists/);
  }, 30_000);

  it('detaches the disk from the live domain and the persistent config', async () => {
    await conn.detachDevice(uuid, diskXml(), { live: true, config: true });
    expect(await disks(true)).toEqual([]);
    // QEMU finishes a SCSI unplug on its own, but not necessarily before the call returns
    expect(await eventually(async () => (await disks(false)).length === 0)).toBe(true);
  }, 30_000);

  it('answers null for an unknown domain, and a coded error where a domain is required', async () => {
    expect(await conn.lookupDomain(randomUUID())).toBeNull();
    const err = await conn.getXml(randomUUID()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).code).toBe(VIR_ERR_NO_DOMAIN);
    // the no-op cases
    await conn.destroyDomain(randomUUID());
    await conn.undefineDomain(randomUUID());
    await conn.undefineSecret(randomUUID());
  });

  it('runs 10 concurrent calls, each with its own result or error', async () => {
    const unknown = randomUUID();
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => {
      switch (i % 3) {
        case 0: return conn.getXml(uuid);
        case 1: return conn.lookupDomain(uuid);
        default: return conn.getXml(unknown); // fails with VIR_ERR_NO_DOMAIN
      }
    }));
    results.forEach((r, i) => {
      if (i % 3 === 0) expect(r.status === 'fulfilled' && String(r.value)).toContain(`<uuid>${uuid}</uuid>`);
      else if (i % 3 === 1) expect(r).toEqual({ status: 'fulfilled', value: expect.objectContaining({ uuid, active: true }) });
      else expect(r).toEqual({ status: 'rejected', reason: expect.objectContaining({ code: VIR_ERR_NO_DOMAIN, message: expect.stringContaining(unknown) }) });
    });
  }, 30_000);

  it('defines a secret with its value and undefines it', async () => {
    const usage = `tether-test-${randomUUID()}`;
    const secret = await conn.defineSecret(
      `<secret ephemeral='no' private='yes'><usage type='iscsi'><target>${usage}</target></usage></secret>`,
      Buffer.from('chap-password'),
    );
    expect(secret).toMatch(/^[0-9a-f-]{36}$/);
    expect(spawnSync('virsh', ['-c', URI, 'secret-list'], { encoding: 'utf8' }).stdout).toContain(secret);
    await conn.undefineSecret(secret);
    expect(spawnSync('virsh', ['-c', URI, 'secret-list'], { encoding: 'utf8' }).stdout).not.toContain(secret);
  }, 30_000);

  it('destroys and undefines (both idempotent)', async () => {
    await conn.destroyDomain(uuid);
    await conn.destroyDomain(uuid);
    expect(await conn.lookupDomain(uuid)).toMatchObject({ state: 'shutoff', active: false });
    await conn.undefineDomain(uuid);
    await conn.undefineDomain(uuid);
    expect(await conn.lookupDomain(uuid)).toBeNull();
  }, 30_000);

  it('reports a failed open with libvirt\'s error, and calls after close fail', async () => {
    const err = await LibvirtConnection.open('qemu+unix:///system?socket=/nonexistent/tether.sock').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).message).toMatch(/nonexistent/);
    const other = await LibvirtConnection.open(URI, { poolSize: 1 });
    expect(await other.isAlive()).toBe(true);
    await other.close();
    expect(await other.isAlive()).toBe(false);
    await expect(other.listDomains()).rejects.toThrow(/closed/);
  });
});

/**
 * Reconnection, against a private libvirtd (run as `nobody`, in session mode, with the test
 * driver) that the test can kill and restart without disturbing the system daemon.
 */
function privateDaemonUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root to run libvirtd as nobody';
  if (spawnSync('libvirtd', ['--version']).status !== 0) return 'libvirtd not found';
  if (!readFileSync('/etc/passwd', 'utf8').match(/^nobody:/m)) return 'no nobody user';
  return null;
}

const noPrivateDaemon = privateDaemonUnavailable();

describe('reconnecting after libvirtd restarts', needs('private-libvirtd', noPrivateDaemon), () => {
  let dir: string;
  let daemon: ChildProcess | undefined;
  let conn: LibvirtConnection;
  let uuid: string;
  const socket = () => join(dir, 'libvirt', 'libvirt-sock');

  const canConnect = () => new Promise<boolean>((resolve) => {
    const s = connect(socket(), () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });

  async function startDaemon(): Promise<void> {
    const [uid, gid] = readFileSync('/etc/passwd', 'utf8').match(/^nobody:[^:]*:(\d+):(\d+):/m)!.slice(1).map(Number);
    daemon = spawn('libvirtd', ['--timeout', '0'], {
      uid, gid, stdio: 'ignore',
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir, XDG_RUNTIME_DIR: dir },
    });
    if (!(await eventually(canConnect, 20_000))) throw new Error('private libvirtd did not come up');
  }

  async function stopDaemon(): Promise<void> {
    const d = daemon;
    daemon = undefined;
    if (!d || d.exitCode !== null) return;
    const exited = new Promise((resolve) => d.once('exit', resolve));
    d.kill('SIGTERM');
    await exited;
  }

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/tether-libvirtd-');
    chmodSync(dir, 0o777);
    await startDaemon();
    conn = await LibvirtConnection.open(`test+unix:///default?socket=${socket()}`, { poolSize: 2 });
    uuid = (await conn.listDomains())[0]!.uuid; // the test driver's predefined domain
    await Promise.all([conn.getXml(uuid), conn.getXml(uuid)]); // open both pooled connections
  }, 60_000);

  afterAll(async () => {
    await conn?.close();
    await stopDaemon();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('fails cleanly while libvirtd is down', async () => {
    await stopDaemon();
    await expect(conn.lookupDomain(uuid)).rejects.toBeInstanceOf(LibvirtError);
    expect(await conn.isAlive()).toBe(false);
  }, 30_000);

  it('retries a read-only call once on a fresh connection after a restart', async () => {
    await startDaemon();
    expect(await conn.lookupDomain(uuid)).toMatchObject({ uuid, state: 'running' });
    await Promise.all([conn.getXml(uuid), conn.getXml(uuid)]); // both pooled connections open
    await stopDaemon();
    await startDaemon();
    // every pooled connection is now dead: both calls must succeed
    const xmls = await Promise.all([conn.getXml(uuid), conn.getXml(uuid)]);
    for (const xml of xmls) expect(xml).toContain(uuid);
  }, 60_000);

  it('throws a write on a dead connection, then works on the reopened one', async () => {
    await Promise.all([conn.getXml(uuid), conn.getXml(uuid)]);
    await stopDaemon();
    await startDaemon();
    await expect(conn.destroyDomain(uuid)).rejects.toBeInstanceOf(LibvirtError);
    await conn.destroyDomain(uuid);
    expect(await conn.lookupDomain(uuid)).toMatchObject({ state: 'shutoff' });
  }, 60_000);
});
