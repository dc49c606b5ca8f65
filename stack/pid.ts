/**
 * Processes by pid, for the stack's parts that outlive a killed parent (a SIGKILLed Node process
 * does not take its children along): alive or not, wait until gone, and reap an orphan recorded in
 * a pid file "pid ownerPid".
 */
import { readFileSync, readdirSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** The process runs (a zombie, exited but not yet reaped by its new parent, counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Waits until `pid` is gone; false when it still runs after `timeoutMs`. */
export async function waitGone(pid: number, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
  return true;
}

/** Direct children of `pid` (from /proc). */
export function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return found;
}

export interface OrphanCheck {
  /** What it is, for the refusal: "a Temporal dev server". */
  what: string;
  /** Where it works, for the refusal: its data folder or file. */
  on: string;
  /** True when the live process `pid` is this one's (its command line or environment says so), not a reused pid. */
  isOurs(pid: number): Promise<boolean>;
  /** How long SIGTERM has before SIGKILL. */
  graceMs: number;
}

/**
 * The pid file records "pid ownerPid". When that process still runs and is ours: stopped (SIGCONT,
 * SIGTERM, SIGKILL after the grace) when its owner is gone, refused when its owner still runs (two
 * must never share one store). The pid file is removed either way but the refusal.
 */
export async function reapOrphan(pidFile: string, check: OrphanCheck): Promise<void> {
  let content: string;
  try {
    content = await fsp.readFile(pidFile, 'utf8');
  } catch {
    return;
  }
  const [pid, owner] = content.trim().split(/\s+/).map(Number);
  if (pid && isAlive(pid) && (await check.isOurs(pid))) {
    if (owner && owner !== process.pid && isAlive(owner)) {
      throw new Error(`${check.what} (pid ${pid}, started by pid ${owner}) is already running on ${check.on}`);
    }
    process.kill(pid, 'SIGCONT'); // a SIGSTOPped process cannot act on SIGTERM
    process.kill(pid, 'SIGTERM');
    if (!(await waitGone(pid, check.graceMs, 50))) process.kill(pid, 'SIGKILL');
    await waitGone(pid, Number.POSITIVE_INFINITY, 50);
  }
  await fsp.rm(pidFile, { force: true });
}

/** The last `bytes` of a log file ('' when there is none). */
export async function readTail(file: string, bytes = 3000): Promise<string> {
  try {
    const handle = await fsp.open(file, 'r');
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - bytes);
      const buf = Buffer.alloc(size - start);
      await handle.read(buf, 0, buf.length, start);
      return buf.toString('utf8').trim();
    } finally {
      await handle.close();
    }
  } catch {
    return '';
  }
}
