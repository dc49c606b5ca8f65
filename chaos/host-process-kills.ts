/**
 * Kills of the host's own processes (`npm run chaos -- --host-processes`): SIGKILL of the case's
 * domain's QEMU, or of virtlogd (QEMU's log handler, which libvirtd needs to start a domain), before,
 * during or after each step of attach and detach that touches the host — the kill matrix of
 * chaos/kills.ts with these two targets.
 *
 *   qemu      the domain's QEMU (pid from /run/libvirt/qemu/<name>.pid) is killed and not started
 *             again: the domain is shut off. What must converge: the workflow closes; the pair is
 *             attached (in the persistent config: the disk comes back on the next start) or absent
 *             in agreement with it; tether records the server as stopped (the compute agent's
 *             power-state sync, src/host/power-state-sync.ts; the API shows SHUTOFF); the checker is
 *             clean; os-start through the API then runs the domain again with the disk live
 *             (attached) or without it (absent); nothing is left over.
 *   virtlogd  killed, then started again (`virtlogd -d`); domains keep running (their log pipes
 *             break). What must converge: what a kill of any part requires (chaos/kills.ts), and
 *             then the server stopped and started again through the API (os-stop, os-start: a
 *             domain start needs virtlogd), the pair the same afterwards.
 *
 * virtlogd is the host's one daemon: other users of this machine's libvirt cannot start a domain
 * while it is down (under a second per case: it is started again at once).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance } from '../src/domain/types.ts';
import { getInstance } from '../src/db/instances.ts';
import { http, COMPUTE_MICROVERSION, pairState, classify, retrying, type Harness } from './harness.ts';
import { runPointCase, type CaseHooks, type Op, type Phase, type Strike } from './kills.ts';
import type { CaseResult } from './report.ts';

/** The steps whose effect is on the host or right beside it (the ones a dying QEMU can meet). */
const STEPS = {
  attach: ['initializeConnection', 'attachDisk', 'completeAttachment'],
  detach: ['beginDetaching', 'detachDisk', 'deleteAttachment'],
} as const;
const PHASES: readonly Phase[] = ['before', 'during', 'after'];
/** A process of the host outside tether's stack: the QEMU of the case's domain, or virtlogd. */
export type HostProcess = 'qemu' | 'virtlogd';
export const HOST_PROCESSES: readonly HostProcess[] = ['qemu', 'virtlogd'];

export interface HostKillCase {
  op: Op;
  step: string;
  phase: Phase;
  target: HostProcess;
}

/** How long the compute agent's resync (10 s) may take to record a stopped domain, with room for a busy machine. */
const POWER_SYNC_MS = 60_000;

export function hostProcessMatrix(): HostKillCase[] {
  const cases: HostKillCase[] = [];
  for (const target of HOST_PROCESSES) {
    for (const op of ['attach', 'detach'] as const) {
      for (const step of STEPS[op]) for (const phase of PHASES) cases.push({ op, step, phase, target });
    }
  }
  return cases;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function pidFrom(file: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await fsp.readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && isAlive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function until(what: string, timeoutMs: number, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** SIGKILL of the domain's QEMU; returns once libvirt says the domain is not running. */
async function killQemu(h: Harness, server: Instance): Promise<string> {
  const info = await h.stack.libvirt.lookupDomain(server.uuid);
  if (!info?.active) throw new Error(`domain ${server.uuid} is not running: no QEMU to kill`);
  const pid = await pidFrom(`/run/libvirt/qemu/${info.name}.pid`);
  if (pid === undefined) throw new Error(`no live pid in /run/libvirt/qemu/${info.name}.pid`);
  process.kill(pid, 'SIGKILL');
  await until(`libvirt did not see QEMU ${pid} die`, 30_000, async () => !(await h.stack.libvirt.lookupDomain(server.uuid))?.active);
  return `the QEMU of ${info.name} (pid ${pid})`;
}

const VIRTLOGD_PID = '/run/virtlogd.pid';

async function killVirtlogd(): Promise<string> {
  const pid = await pidFrom(VIRTLOGD_PID);
  if (pid === undefined) throw new Error(`virtlogd is not running (no live pid in ${VIRTLOGD_PID})`);
  process.kill(pid, 'SIGKILL');
  await until(`virtlogd ${pid} did not die`, 15_000, async () => !isAlive(pid));
  return `virtlogd (pid ${pid})`;
}

async function startVirtlogd(): Promise<void> {
  if ((await pidFrom(VIRTLOGD_PID)) === undefined) {
    await new Promise<void>((resolve) => {
      const child = spawn('virtlogd', ['-d'], { stdio: 'ignore' });
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
  }
  await until('virtlogd did not start again', 30_000, async () => (await pidFrom(VIRTLOGD_PID)) !== undefined && fs.existsSync('/run/libvirt/virtlogd-sock'));
}

/** The server as the API shows it: status and power state. */
async function apiServer(h: Harness, server: Instance): Promise<{ status: string; powerState: number } | string> {
  const a = await http(h, 'GET', `/v2.1/servers/${server.uuid}`, { headers: COMPUTE_MICROVERSION });
  if (a.status !== 200) return `GET /servers/${server.uuid} answered ${a.status}`;
  const s = (a.json as { server: Record<string, unknown> }).server;
  return { status: String(s.status), powerState: Number(s['OS-EXT-STS:power_state']) };
}

/** After QEMU died: tether records the server as stopped (the API says SHUTOFF, power state 4). */
async function recordedStopped(h: Harness, server: Instance): Promise<string[]> {
  try {
    await until('the instance was not recorded as stopped', POWER_SYNC_MS, async () => (await retrying(() => getInstance(h.stack.db, server.uuid)))?.vmState === 'stopped');
  } catch (err) {
    const now = await getInstance(h.stack.db, server.uuid).catch(() => null);
    return [`${(err as Error).message} ${POWER_SYNC_MS / 1000} s after its QEMU was killed (vm_state ${now?.vmState ?? 'unknown'}, task_state ${now?.taskState ?? 'none'})`];
  }
  const shown = await apiServer(h, server);
  if (typeof shown === 'string') return [shown];
  return shown.status === 'SHUTOFF' && shown.powerState === 4 ? [] : [`the API shows the killed domain's server as ${shown.status} (power state ${shown.powerState}), not SHUTOFF (4)`];
}

/** os-start through the API, then the server runs (API ACTIVE, domain running) and the pair is still what it was. */
async function startedAgain(h: Harness, server: Instance, volumeId: string, state: string): Promise<string[]> {
  const a = await http(h, 'POST', `/v2.1/servers/${server.uuid}/action`, { headers: COMPUTE_MICROVERSION, body: { 'os-start': null }, timeoutMs: 60_000 });
  if (a.status !== 202) return [`os-start of the stopped server answered ${a.status === 0 ? 'nothing' : `${a.status} ${(a as { text: string }).text.slice(0, 200)}`}`];
  try {
    await until('the server did not run again after os-start', 120_000, async () => {
      const shown = await apiServer(h, server);
      return typeof shown !== 'string' && shown.status === 'ACTIVE' && Boolean((await h.stack.libvirt.lookupDomain(server.uuid))?.active);
    });
  } catch (err) {
    return [(err as Error).message];
  }
  const after = classify(await retrying(() => pairState(h, server.uuid, volumeId)));
  return after === state ? [] : [`after os-start the pair is ${after}, before it was ${state}`];
}

/** The kill at the case's point: QEMU is not started again (the domain stays shut off until os-start); virtlogd is, the hold released before or after. */
function strikeOf(h: Harness, target: HostProcess, server: Instance): Strike {
  return async ({ held, heldBy, release, notes }) => {
    const struckAt = Date.now();
    if (target === 'qemu') {
      notes.push(`killed ${await killQemu(h, server)}${heldBy ? ` (activity held in pid ${heldBy})` : ''}`);
      await release();
      return struckAt;
    }
    const releaseAfterRestart = held && h.rnd.bool();
    notes.push(`killed ${await killVirtlogd()}${heldBy ? ` (activity held in pid ${heldBy})` : ''}, release ${releaseAfterRestart ? 'after' : 'before'} restart`);
    if (!releaseAfterRestart) await release();
    await startVirtlogd();
    if (releaseAfterRestart) await release();
    return struckAt;
  };
}

/** os-stop through the API, the server SHUTOFF, then startedAgain: the domain's life works after virtlogd came back. */
async function stoppedAndStarted(h: Harness, server: Instance, volumeId: string, state: string): Promise<string[]> {
  const a = await http(h, 'POST', `/v2.1/servers/${server.uuid}/action`, { headers: COMPUTE_MICROVERSION, body: { 'os-stop': null }, timeoutMs: 60_000 });
  if (a.status !== 202) return [`os-stop after virtlogd's restart answered ${a.status === 0 ? 'nothing' : `${a.status} ${(a as { text: string }).text.slice(0, 200)}`}`];
  try {
    await until('the server did not stop after os-stop', 120_000, async () => {
      const shown = await apiServer(h, server);
      return typeof shown !== 'string' && shown.status === 'SHUTOFF';
    });
  } catch (err) {
    return [(err as Error).message];
  }
  return startedAgain(h, server, volumeId, state);
}

function hooksFor(h: Harness, target: HostProcess): CaseHooks {
  if (target === 'virtlogd') return { verify: (server, volume, state) => stoppedAndStarted(h, server, volume.id, state) };
  return {
    settle: (server) => recordedStopped(h, server),
    verify: (server, volume, state) => startedAgain(h, server, volume.id, state),
  };
}

export function hostProcessCaseName(c: HostKillCase): string {
  return `kill ${c.op} ${c.step} ${c.phase} ${c.target}`;
}

export function runHostProcessKill(h: Harness, c: HostKillCase, run: number, server: Instance): Promise<CaseResult> {
  return runPointCase(h, c, { scenario: hostProcessCaseName(c), label: c.target, run, server, hooks: hooksFor(h, c.target) }, strikeOf(h, c.target, server));
}
