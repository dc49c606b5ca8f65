/**
 * Makes sure a local libvirtd answers for qemu:///system. These machines have no systemd,
 * so the daemons are started by hand as root: `virtlogd -d` (QEMU's log handler; domains
 * fail to start without it), then `libvirtd -d`. Other URIs (test:///default,
 * qemu+tcp://host/system, ...) are left alone.
 */
import { execFile, spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive } from './pid.ts';

export interface LibvirtdHandle {
  /** True when this call started libvirtd (and/or virtlogd). */
  startedByUs: boolean;
  /** Stops only the daemons this call started (SIGTERM, then SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/** The host's own system daemon (not one behind an explicit `?socket=`, e.g. stack/libvirtd-isolated.ts). */
const LOCAL_SYSTEM_URI = /^qemu(\+unix)?:\/\/\/system(\?(?!.*\bsocket=).*)?$/;

const DAEMONS = [
  { name: 'virtlogd', pidFile: '/run/virtlogd.pid' },
  { name: 'libvirtd', pidFile: '/run/libvirtd.pid' },
] as const;

/** `virsh -c URI version` answers within 10 s. */
export function isLibvirtAvailable(uri: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('virsh', ['-c', uri, 'version'], { timeout: 10_000 }, (err) => resolve(!err));
  });
}

export async function ensureLibvirtd(uri: string): Promise<LibvirtdHandle> {
  const nothing: LibvirtdHandle = { startedByUs: false, stop: async () => {} };
  if (!LOCAL_SYSTEM_URI.test(uri)) return nothing;
  if (await isLibvirtAvailable(uri)) return nothing;

  if (process.getuid?.() !== 0) {
    throw new Error(
      `libvirtd does not answer at ${uri} and starting it needs root: run 'sudo virtlogd -d && sudo libvirtd -d' ` +
        `(or 'sudo systemctl start libvirtd' where systemd runs)`,
    );
  }

  const started: { name: string; pid: number }[] = [];
  const stop = async () => {
    for (const daemon of [...started].reverse()) await stopDaemon(daemon.name, daemon.pid);
    started.length = 0;
  };
  try {
    for (const daemon of DAEMONS) {
      if ((await runningPid(daemon.name, daemon.pidFile)) !== undefined) continue;
      await runDaemonize(daemon.name);
      const pid = await waitForPidFile(daemon.name, daemon.pidFile, 10_000);
      started.push({ name: daemon.name, pid });
    }
    const deadline = Date.now() + 30_000;
    while (!(await isLibvirtAvailable(uri))) {
      if (Date.now() > deadline) throw new Error(`libvirtd did not answer at ${uri} within 30 s (see /var/log/libvirt/)`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { startedByUs: started.length > 0, stop };
}

/** Runs `NAME -d` (forks into the background) and waits for the foreground process to exit. */
function runDaemonize(name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // stdin/stdout ignored and stderr piped: the daemon child redirects its stdio to
    // /dev/null, and we wait for 'exit' (not 'close'), so an inherited pipe cannot hang us.
    const child = spawn(name, ['-d'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.once('error', (err) => {
      reject(
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? new Error(`${name} is not installed: run scripts/setup.sh (Debian packages libvirt-daemon-system, libvirt-daemon-driver-qemu)`)
          : err,
      );
    });
    child.once('exit', (code, signal) => {
      child.stderr?.destroy();
      if (code === 0) resolve();
      else reject(new Error(`'${name} -d' failed (${signal ?? `code ${code}`}): ${stderr.trim()}`));
    });
  });
}

/** The pid in pidFile when that process is alive and is `name` (not a reused pid). */
export async function runningPid(name: string, pidFile: string): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number.parseInt((await fsp.readFile(pidFile, 'utf8')).trim(), 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  const comm = await fsp.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
  return comm.trim() === name ? pid : undefined;
}

export async function waitForPidFile(name: string, pidFile: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = await runningPid(name, pidFile);
    if (pid !== undefined) return pid;
    if (Date.now() > deadline) throw new Error(`${name} started but ${pidFile} names no running ${name}`);
    await sleep(50);
  }
}

export async function stopDaemon(name: string, pid: number): Promise<void> {
  const comm = await fsp.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
  if (comm.trim() !== name) return; // already gone (or the pid was reused)
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}
