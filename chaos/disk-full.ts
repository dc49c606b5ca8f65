/**
 * A full disk (`npm run chaos -- --disk-full`): the stack's data folder — PostgreSQL's data,
 * Temporal's SQLite, the volumes' files — is a small ext4 of its own (ChaosStack
 * `dataFilesystemMiB`, loop-mounted). A case fills it with a ballast file, to the last byte, while
 * attaches, detaches and volume creates go through the API:
 *   filling  the ballast grows over a few seconds while the operations run (they meet the disk as it fills);
 *   full     the disk is full before the operations start and stays full while they run.
 * Then the ballast is removed, and what a kill requires is required again:
 *   - every answer while full is a success or a clear error: a 4xx or 5xx whose message is not the
 *     generic "Unexpected API Error" (it says what happened and what to do); no request hangs;
 *   - every workflow closes, each pair attached or absent everywhere in agreement with it (no half
 *     state), the checker clean;
 *   - Temporal and PostgreSQL run (a dependency that died of the full disk and did not come back by
 *     itself once space was freed is a failure; it is started again so the run can go on);
 *   - tether works: what is attached is detached again, the volumes deleted.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance, Volume } from '../src/domain/types.ts';
import {
  apiAttach,
  apiDetach,
  attachAndWait,
  attachWorkflowId,
  check,
  classify,
  detachWorkflowId,
  EXPECTED_BY_END,
  http,
  newVolume,
  pairState,
  result,
  retrying,
  tidy,
  waitClosed,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
} from './harness.ts';
import type { CaseResult } from './report.ts';

/** The data folder's size: room for PostgreSQL (~40 MiB with its WAL), Temporal's SQLite and the volumes' qcow2 headers. */
export const DISK_FULL_MIB = 320;

export interface DiskFullCase {
  /** `filling`: the disk fills while the operations run; `full`: it is full before they start. */
  when: 'filling' | 'full';
}

export const DISK_FULL_CASES: readonly DiskFullCase[] = [{ when: 'filling' }, { when: 'full' }];

export function diskFullCaseName(c: DiskFullCase): string {
  return c.when === 'filling' ? 'disk full: attaches, detaches and volume creates while the data folder fills, then space freed' : 'disk full: attaches, detaches and volume creates on a full data folder, then space freed';
}

const CHUNK = 1024 * 1024;

/** Writes the ballast until the filesystem refuses (ENOSPC), over about `overMs`; returns the bytes written. */
async function fillUp(file: string, overMs: number): Promise<number> {
  const stat = await fsp.statfs(path.dirname(file));
  const free = stat.bavail * stat.bsize;
  const steps = Math.max(1, Math.ceil(free / CHUNK));
  const pause = overMs / steps;
  const fh = await fsp.open(file, 'a');
  let written = 0;
  try {
    for (const size of [CHUNK, 4096, 512]) {
      const block = Buffer.alloc(size, 0x5a);
      for (;;) {
        try {
          await fh.write(block);
          written += size;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
        if (size === CHUNK && pause >= 1) await sleep(pause);
      }
    }
    await fh.sync().catch(() => undefined);
  } finally {
    await fh.close().catch(() => undefined);
  }
  return written;
}

/** Why an answer while the disk is full is not acceptable (undefined: it is). */
function badAnswer(what: string, a: HttpAnswer | HttpFailure): string | undefined {
  if (a.status === 0) return `${what}: no answer (${(a as HttpFailure).error})`;
  if (a.status < 400) return undefined;
  const text = (a as HttpAnswer).text;
  const fault = Object.values((a as HttpAnswer).json ?? {})[0] as { message?: unknown } | undefined;
  const message = typeof fault?.message === 'string' ? fault.message : '';
  if (!message) return `${what}: ${a.status} without a fault message (${text.slice(0, 200)})`;
  if (/Unexpected API Error/i.test(message)) return `${what}: ${a.status} ${message} (a generic error: it does not say the disk is full or what to do)`;
  return undefined;
}

interface Op {
  kind: 'attach' | 'detach' | 'create';
  server?: Instance;
  volume?: Volume;
  answer?: HttpAnswer | HttpFailure;
}

export async function runDiskFull(h: Harness, c: DiskFullCase, run: number): Promise<CaseResult> {
  const scenario = diskFullCaseName(c);
  if (!h.stack.hasDataFilesystem) {
    return result(h, scenario, run, { passed: false, skipped: true, converged: false, outcome: 'skipped', leaked: 0, convergeMs: null, notes: ['the stack has no data filesystem of its own (ChaosStack dataFilesystemMiB)'] });
  }
  const notes: string[] = [];
  const problems: string[] = [];
  const servers = h.servers;
  // Made while there is room: per round, one to detach and one to attach per server. `filling`: the
  // first round while the ballast grows, the second once it is full; `full`: both on the full disk.
  const rounds = [0, 1];
  const toDetach = await Promise.all(rounds.flatMap((r) => servers.map((_, i) => newVolume(h, `chaos-full-d${r}-${i}`))));
  const toAttach = await Promise.all(rounds.flatMap((r) => servers.map((_, i) => newVolume(h, `chaos-full-a${r}-${i}`))));
  for (const [k, volume] of toDetach.entries()) await attachAndWait(h, servers[k % servers.length]!, volume);

  const ballast = path.join(h.stack.baseDir, `ballast-${run}`);
  const ops: Op[] = [];
  const fire = (op: Op): Promise<void> => {
    ops.push(op);
    const request = op.kind === 'attach' ? apiAttach(h, op.server!, op.volume!)
      : op.kind === 'detach' ? apiDetach(h, op.server!, op.volume!)
      : http(h, 'POST', '/v3/volumes', { body: { volume: { size: 1, name: `chaos-full-new-${ops.length}` } }, timeoutMs: 60_000 });
    return request.then((a) => {
      op.answer = a;
    });
  };
  const t0 = Date.now();
  let filled = 0;
  let freedAt = 0;
  try {
    const filling = fillUp(ballast, c.when === 'filling' ? 6_000 : 0);
    if (c.when === 'full') filled = await filling;
    const requests: Promise<void>[] = [];
    for (const r of rounds) {
      if (r === 1 && c.when === 'filling') filled = await filling;
      for (const [i, server] of servers.entries()) {
        const k = r * servers.length + i;
        requests.push(fire({ kind: 'detach', server, volume: toDetach[k]! }));
        requests.push(fire({ kind: 'attach', server, volume: toAttach[k]! }));
        requests.push(fire({ kind: 'create' }));
        if (c.when === 'filling' && r === 0) await sleep(h.rnd.int(500, 2000));
      }
    }
    notes.push(`ballast ${(filled / CHUNK).toFixed(1)} MiB written ${c.when === 'full' ? 'before the requests' : 'while the first round ran (the second on the full disk)'}, until ENOSPC`);
    await Promise.all(requests);
    // full for a while longer: the workflows meet it in their later steps too
    await sleep(h.rnd.int(5_000, 15_000));
  } finally {
    await fsp.rm(ballast, { force: true });
    freedAt = Date.now();
  }
  const statuses = ops.map((o) => `${o.kind} ${o.answer ? o.answer.status : 'none'}`);
  notes.push(`answers while full: ${statuses.join(', ')}`);
  const messages = new Set(ops.filter((o) => o.answer && o.answer.status >= 400).map((o) => `${o.answer!.status} ${(o.answer as HttpAnswer).text.slice(0, 240)}`));
  if (messages.size > 0) notes.push(`errors: ${[...messages].join(' | ')}`);
  for (const op of ops) {
    const why = op.answer ? badAnswer(`${op.kind}${op.volume ? ` ${op.volume.id}` : ''}`, op.answer) : `${op.kind}: no answer at all`;
    if (why) problems.push(why);
  }

  // Space is back: the dependencies must be up (by themselves), then everything converges.
  try {
    await h.stack.waitHealthy(120_000);
  } catch (err) {
    const dead = await h.stack.deadDependencies();
    problems.push(`not healthy 120 s after space was freed (${(err as Error).message})${dead.length ? `; not running: ${dead.join(', ')} (started again by the runner)` : ''}`);
    for (const d of dead) await h.stack.restart(d);
    await h.stack.waitHealthy(120_000);
  }
  const pairs: Array<{ server: Instance; volume: Volume; op: 'attach' | 'detach' }> = [];
  for (const op of ops) if (op.kind !== 'create') pairs.push({ server: op.server!, volume: op.volume!, op: op.kind });
  const ids = pairs.map((p) => (p.op === 'attach' ? attachWorkflowId(p.server.uuid, p.volume.id) : detachWorkflowId(p.server.uuid, p.volume.id)));
  const ends = await waitClosed(h, ids);
  await h.stack.settled();
  let leaked = 0;
  const outcomes: string[] = [];
  for (const [i, p] of pairs.entries()) {
    const end = ends[ids[i]!]!;
    const state = classify(await retrying(() => pairState(h, p.server.uuid, p.volume.id)));
    outcomes.push(`${p.op} ${end} → ${state.startsWith('in-between') ? 'in-between' : state}`);
    if (end === 'RUNNING') {
      problems.push(`workflow ${ids[i]} still running ${h.deadlineMs / 1000} s after space was freed`);
      leaked++;
    } else if (EXPECTED_BY_END[p.op][end] === undefined) problems.push(`${ids[i]} ended ${end}`);
    else if (state !== EXPECTED_BY_END[p.op][end]) {
      problems.push(`${ids[i]} ${end} but the stores say ${state}`);
      leaked++;
    }
  }
  notes.push(`after space was freed: ${outcomes.join(', ')}`);
  const checked = await check(h);
  if (checked.disagreements.length > 0 || checked.inFlight.length > 0) problems.push(`checker:\n${checked.text}`);
  leaked += checked.disagreements.length + checked.inFlight.length;
  const convergeMs = Object.values(ends).includes('RUNNING') ? null : Date.now() - freedAt;

  // tether works again: detach what is attached, delete the volumes (also those the creates made)
  problems.push(...(await tidy(h, pairs.map((p) => ({ server: p.server, volume: p.volume })))));
  for (const op of ops) {
    const made = op.kind === 'create' && op.answer && op.answer.status < 300 ? ((op.answer as HttpAnswer).json as { volume?: { id?: string } } | null)?.volume?.id : undefined;
    if (!made) continue;
    // a volume the disk let be made is available (or error, said so); never left creating
    const status = await h.stack.blockStorage.getVolume(made).then((v) => v.status, (err: unknown) => `unreadable (${(err as Error).message})`);
    if (status !== 'available' && status !== 'error') problems.push(`volume ${made}, made while full, is ${status}`);
    await h.stack.service.deleteVolume(made).catch((err: unknown) => problems.push(`deleting volume ${made} made while full: ${(err as Error).message}`));
  }
  notes.push(`case took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return result(h, scenario, run, {
    passed: problems.length === 0,
    converged: !Object.values(ends).includes('RUNNING') && checked.disagreements.length === 0 && checked.inFlight.length === 0,
    outcome: problems.length === 0 ? 'converged' : 'problems',
    leaked,
    convergeMs,
    triggered: filled > 0,
    notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  });
}
