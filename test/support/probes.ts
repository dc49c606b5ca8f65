/**
 * Whether a dependency of the tests answers, with patience for a loaded 2-core machine (a probe that
 * gives up after a second skips tests that would have run): each returns null when it answers, else
 * why not — the reason a skip records (test/support/skips.ts).
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a probe keeps trying: TETHER_TEST_PROBE_SECONDS, default 60. */
export const PROBE_MS = Number(process.env.TETHER_TEST_PROBE_SECONDS ?? 60) * 1000;

async function until(probe: () => Promise<string | null>, waitMs: number): Promise<string | null> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const why = await probe();
    if (why === null || Date.now() >= deadline) return why;
    await sleep(1_000);
  }
}

/** `virsh -c URI version` succeeds (tried for up to `waitMs`). */
export function libvirtMissing(uri = process.env.LIBVIRT_URI ?? 'qemu:///system', waitMs = PROBE_MS): Promise<string | null> {
  return until(
    () =>
      new Promise((resolve) => {
        execFile('virsh', ['-c', uri, 'version'], { timeout: Math.max(waitMs, 10_000) }, (err, _stdout, stderr) => {
          if (!err) resolve(null);
          else if ((err as NodeJS.ErrnoException).code === 'ENOENT') resolve('virsh not found (libvirt-clients; `npm run setup` installs it)');
          else resolve(`virsh -c ${uri} version failed: ${stderr.trim().split('\n').pop() || err.message}`);
        });
      }),
    waitMs,
  );
}

/** Something accepts TCP connections at host:port (tried for up to `waitMs`). */
export function tcpMissing(host: string, port: number, waitMs = PROBE_MS): Promise<string | null> {
  return until(
    () =>
      new Promise((resolve) => {
        const socket = net.connect({ host, port });
        const done = (why: string | null) => {
          socket.destroy();
          resolve(why);
        };
        socket.setTimeout(Math.min(waitMs, 30_000) || 1_000, () => done(`nothing answers at ${host}:${port} (timed out)`));
        socket.once('connect', () => done(null));
        socket.once('error', (err) => done(`nothing answers at ${host}:${port} (${err.message})`));
      }),
    waitMs,
  );
}
