/**
 * A second (third, …) libvirt daemon on this machine that shares nothing with the system one: its
 * own libvirtd and virtlogd in a mount namespace of their own (`unshare --mount`), where
 * /etc/libvirt, /run/libvirt, /var/lib/libvirt/qemu, /var/cache/libvirt and /var/log/libvirt are
 * bind mounts of private directories. So it has its own sockets, its own persistent domains and
 * secrets, its own QEMU processes, monitor sockets and logs — a compute host of its own, reached at
 * `qemu+unix:///system?socket=<runDir>/libvirt-sock`. What it shares with the host is what two real
 * compute hosts share with their storage: /var/lib/libvirt/images (the embedded volume service's
 * files), the QEMU binaries, the kernel and the network namespace.
 *
 * Its QEMU runs as the same user (libvirt-qemu) with the same security driver (DAC with dynamic
 * ownership; AppArmor when the host has it) as the system daemon's: it copies the host's
 * libvirtd.conf/qemu.conf once, adding a host_uuid of its own. QEMU's image locks are OFD locks on
 * the open file, so a disk moved from one daemon's domain to the other's is free as soon as the
 * source QEMU has exited (a migrate destroys the source domain before it starts the target's).
 *
 * Needs root (mount namespaces, and a system-mode libvirtd). docs/production.md ("Compute hosts")
 * has the choice and its measured costs (`node --import tsx bench/hypervisors.ts`).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isLibvirtAvailable, runningPid, stopDaemon, waitForPidFile } from './libvirtd.ts';
import { isAlive } from './pid.ts';

export interface IsolatedLibvirtdOptions {
  /** The compute host's name (letters, digits, '-', '_'): names its directories and its host_uuid. */
  name: string;
  /** Persistent state: etc/ (domains, secrets, config), lib/ (QEMU state), cache/, log/. */
  stateDir: string;
  /** Sockets, pid files, live domain status (tmpfs, like /run/libvirt). Default /run/tether/hypervisors/<name>. */
  runDir?: string;
  /**
   * Keep the daemon's domains running and its state on disk at stop(), as a real host keeps its
   * guests across a libvirtd restart (npm start). Default false: stop() destroys every domain it
   * runs and removes stateDir and runDir (tests).
   */
  keepState?: boolean;
  /** Copy the system daemon's QEMU capabilities cache into a new daemon's (default true; false measures a cold start). */
  seedCapabilities?: boolean;
}

export interface IsolatedLibvirtd {
  name: string;
  /** The libvirt URI a compute agent opens (LIBVIRT_URI). */
  uri: string;
  stateDir: string;
  runDir: string;
  libvirtdPid: number;
  virtlogdPid: number;
  /** True when start found this daemon already running (a restart of npm start) and adopted it. */
  adopted: boolean;
  /** Where QEMU of domain `name` writes its pid (only while it runs). */
  qemuPidFile(domainName: string): string;
  /** Stops the daemons (and, without keepState, every QEMU they started and all their files). Idempotent. */
  stop(): Promise<void>;
}

/** The host's own configuration files the private /etc/libvirt starts from. */
const HOST_CONFIG = '/etc/libvirt';
const CONFIG_FILES = ['libvirt.conf', 'libvirtd.conf', 'qemu.conf', 'virtlogd.conf', 'virtlockd.conf'];
/** QEMU capabilities probed by the system daemon: copied (not shared) so that a new daemon need not probe every emulator again. */
const HOST_CAPABILITIES_CACHE = '/var/cache/libvirt/qemu/capabilities';

/** The mount points the daemon gets private copies of, and the subdirectory of stateDir (or runDir) behind each. */
const PRIVATE_MOUNTS: Array<{ target: string; source: (dirs: { state: string; run: string }) => string }> = [
  { target: '/etc/libvirt', source: (d) => path.join(d.state, 'etc') },
  { target: '/run/libvirt', source: (d) => d.run },
  { target: '/var/lib/libvirt/qemu', source: (d) => path.join(d.state, 'lib') },
  { target: '/var/cache/libvirt', source: (d) => path.join(d.state, 'cache') },
  { target: '/var/log/libvirt', source: (d) => path.join(d.state, 'log') },
];

/** A unix socket path must fit in sockaddr_un (108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

export function isolatedLibvirtUri(runDir: string): string {
  return `qemu+unix:///system?socket=${path.join(runDir, 'libvirt-sock')}`;
}

/** A stable host UUID per name: libvirt's identity of the host (capabilities, migration checks). */
function hostUuid(name: string): string {
  const h = createHash('sha1').update(`tether-hypervisor:${name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export async function startIsolatedLibvirtd(options: IsolatedLibvirtdOptions): Promise<IsolatedLibvirtd> {
  if (!/^[A-Za-z0-9_-]+$/.test(options.name)) throw new Error(`hypervisor name '${options.name}' may only use letters, digits, '-' and '_'`);
  if (process.getuid?.() !== 0) throw new Error('a libvirt daemon of its own needs root (a mount namespace and a system-mode libvirtd)');
  const stateDir = path.resolve(options.stateDir);
  const runDir = path.resolve(options.runDir ?? path.join('/run/tether/hypervisors', options.name));
  const uri = isolatedLibvirtUri(runDir);
  if (path.join(runDir, 'libvirt-sock').length > MAX_SOCKET_PATH) {
    throw new Error(`the socket path under ${runDir} is longer than ${MAX_SOCKET_PATH} bytes: choose a shorter runDir`);
  }
  const pidFiles = { libvirtd: path.join(runDir, 'libvirtd.pid'), virtlogd: path.join(runDir, 'virtlogd.pid') };

  const handle = (libvirtdPid: number, virtlogdPid: number, adopted: boolean): IsolatedLibvirtd => {
    let stopped: Promise<void> | undefined;
    return {
      name: options.name,
      uri,
      stateDir,
      runDir,
      libvirtdPid,
      virtlogdPid,
      adopted,
      qemuPidFile: (domainName) => path.join(runDir, 'qemu', `${domainName}.pid`),
      stop: () => (stopped ??= stopIsolated({ uri, stateDir, runDir, libvirtdPid, virtlogdPid, keepState: options.keepState ?? false })),
    };
  };

  // A daemon of this name still running (npm start restarted, or a crashed run): adopt it.
  const running = { libvirtd: await runningPid('libvirtd', pidFiles.libvirtd), virtlogd: await runningPid('virtlogd', pidFiles.virtlogd) };
  if (running.libvirtd !== undefined && running.virtlogd !== undefined && (await isLibvirtAvailable(uri))) {
    return handle(running.libvirtd, running.virtlogd, true);
  }
  for (const name of ['libvirtd', 'virtlogd'] as const) {
    const pid = running[name];
    if (pid !== undefined) await stopDaemon(name, pid);
  }

  await prepareDirectories(options.name, stateDir, runDir, options.seedCapabilities ?? true);
  const pids: { libvirtd?: number; virtlogd?: number } = {};
  try {
    await startInNamespace(stateDir, runDir);
    pids.virtlogd = await waitForPidFile('virtlogd', pidFiles.virtlogd, 10_000);
    const libvirtdPid = (pids.libvirtd = await waitForPidFile('libvirtd', pidFiles.libvirtd, 10_000));
    // Without a capabilities cache libvirtd probes every installed emulator first (about a minute on 2 busy cores).
    const deadline = Date.now() + 180_000;
    while (!(await isLibvirtAvailable(uri))) {
      if (!isAlive(libvirtdPid)) throw new Error(`libvirtd of ${options.name} exited during start (see ${path.join(stateDir, 'log')})`);
      if (Date.now() > deadline) throw new Error(`libvirtd of ${options.name} did not answer at ${uri} within 180 s`);
      await sleep(100);
    }
  } catch (err) {
    await stopIsolated({ uri, stateDir, runDir, libvirtdPid: pids.libvirtd, virtlogdPid: pids.virtlogd, keepState: options.keepState ?? false }).catch(() => undefined);
    throw err;
  }
  return handle(pids.libvirtd, pids.virtlogd, false);
}

async function prepareDirectories(name: string, stateDir: string, runDir: string, seedCapabilities: boolean): Promise<void> {
  const etc = path.join(stateDir, 'etc');
  await fsp.mkdir(etc, { recursive: true, mode: 0o700 });
  for (const file of CONFIG_FILES) {
    const target = path.join(etc, file);
    if (await exists(target)) continue;
    const from = path.join(HOST_CONFIG, file);
    if (!(await exists(from))) continue;
    await fsp.copyFile(from, target);
    await fsp.chmod(target, (await fsp.stat(from)).mode & 0o777);
    if (file === 'libvirtd.conf') {
      await fsp.appendFile(target, `\n# tether: hypervisor '${name}' (stack/libvirtd-isolated.ts)\nhost_uuid = "${hostUuid(name)}"\n`);
    }
  }
  // /var/lib/libvirt/qemu belongs to libvirt-qemu (QEMU writes its own files there): same owner and mode.
  const lib = path.join(stateDir, 'lib');
  await fsp.mkdir(lib, { recursive: true });
  const hostLib = await fsp.stat('/var/lib/libvirt/qemu');
  await fsp.chown(lib, hostLib.uid, hostLib.gid);
  await fsp.chmod(lib, hostLib.mode & 0o777);

  const capabilities = path.join(stateDir, 'cache', 'qemu', 'capabilities');
  await fsp.mkdir(capabilities, { recursive: true });
  if (seedCapabilities && (await fsp.readdir(capabilities)).length === 0) {
    for (const file of await fsp.readdir(HOST_CAPABILITIES_CACHE).catch(() => [] as string[])) {
      if (file.endsWith('.xml')) await fsp.copyFile(path.join(HOST_CAPABILITIES_CACHE, file), path.join(capabilities, file));
    }
  }
  await fsp.mkdir(path.join(stateDir, 'log', 'qemu'), { recursive: true });
  await fsp.mkdir(runDir, { recursive: true, mode: 0o755 });
  // The mount points themselves (present once libvirt is installed; /run/libvirt only while the system daemon runs).
  for (const m of PRIVATE_MOUNTS) await fsp.mkdir(m.target, { recursive: true });
}

/**
 * `unshare --mount` (private propagation): bind the private directories over libvirt's paths, then
 * start virtlogd and libvirtd, which fork into the background and keep the namespace alive.
 */
function startInNamespace(stateDir: string, runDir: string): Promise<void> {
  const binds = PRIVATE_MOUNTS.map((m) => [m.source({ state: stateDir, run: runDir }), m.target]);
  const script = [
    ...binds.map((_, i) => `mount --bind "\${${2 * i + 1}}" "\${${2 * i + 2}}"`),
    'virtlogd -d -p /run/libvirt/virtlogd.pid',
    'libvirtd -d -p /run/libvirt/libvirtd.pid',
  ].join(' && ');
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-ec', script, 'sh', ...binds.flat()], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', reject);
    // 'exit', not 'close': the daemons inherit nothing of ours, but do not wait on pipes anyway.
    child.once('exit', (code, signal) => {
      child.stderr?.destroy();
      if (code === 0) resolve();
      else reject(new Error(`starting libvirtd in its own mount namespace failed (${signal ?? `code ${code}`}): ${stderr.trim()}`));
    });
  });
}

async function stopIsolated(s: { uri: string; stateDir: string; runDir: string; libvirtdPid: number | undefined; virtlogdPid: number | undefined; keepState: boolean }): Promise<void> {
  if (!s.keepState && s.libvirtdPid !== undefined && isAlive(s.libvirtdPid)) {
    // Through libvirt, so that it gives the disk files back (ownership) and QEMU releases their locks.
    for (const uuid of await virsh(s.uri, ['list', '--uuid']).then((out) => out.split('\n').filter(Boolean), () => [])) {
      await virsh(s.uri, ['destroy', uuid]).catch(() => undefined);
    }
  }
  if (s.libvirtdPid !== undefined) await stopDaemon('libvirtd', s.libvirtdPid);
  if (s.virtlogdPid !== undefined) await stopDaemon('virtlogd', s.virtlogdPid);
  if (s.keepState) return;
  // A QEMU libvirt could not destroy (its daemon was wedged): its pid file is in our run dir.
  await killQemuLeftovers(path.join(s.runDir, 'qemu'));
  await fsp.rm(s.runDir, { recursive: true, force: true });
  await fsp.rm(s.stateDir, { recursive: true, force: true });
}

async function killQemuLeftovers(qemuRunDir: string): Promise<void> {
  for (const file of await fsp.readdir(qemuRunDir).catch(() => [] as string[])) {
    if (!file.endsWith('.pid')) continue;
    const pid = Number.parseInt(await fsp.readFile(path.join(qemuRunDir, file), 'utf8').catch(() => ''), 10);
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) continue;
    if (!readComm(pid).startsWith('qemu-system')) continue;
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 5_000;
    while (isAlive(pid) && Date.now() < deadline) await sleep(20);
  }
}

function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function virsh(uri: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('virsh', ['-q', '-c', uri, ...args], { timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(
    () => true,
    () => false,
  );
}
