/**
 * Faults that are not a kill: a worker stopped (SIGSTOP) past its activity timeouts then continued,
 * the block storage refusing (TETHER_FAULTS on reserveVolume / initializeConnection) or not answering
 * (its volume row locked past the activity's start-to-close timeout), libvirt refusing the attach
 * (TETHER_FAULTS on attachDisk), and a guest that ignores a virtio unplug.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance, Volume } from '../src/domain/types.ts';
import {
  apiAttach,
  apiDetach,
  attachWorkflowId,
  check,
  classify,
  describeAnswer,
  detachWorkflowId,
  newVolume,
  pairState,
  PausePoint,
  result,
  retrying,
  tetherState,
  tidy,
  waitClosed,
  type Harness,
} from './harness.ts';
import type { CaseResult } from './report.ts';
import type { WorkerName } from './stack.ts';

export interface FaultScenario {
  name: string;
  /** Rough duration, for choosing the short mode. */
  slow: boolean;
  run(h: Harness, run: number, server: Instance): Promise<CaseResult>;
}

/** Ends an attach case: waits, classifies, checks; `expect` lists the acceptable outcomes. */
async function finishAttach(
  h: Harness,
  scenario: string,
  run: number,
  o: { server: Instance; volume: Volume; since: number; expect: Array<'attached' | 'absent'>; notes: string[]; errorMatch?: RegExp },
): Promise<CaseResult> {
  const id = attachWorkflowId(o.server.uuid, o.volume.id);
  const end = (await waitClosed(h, [id]))[id]!;
  const state = classify(await retrying(() => pairState(h, o.server.uuid, o.volume.id)));
  const checked = await check(h);
  const problems: string[] = [];
  o.notes.push(`workflow ${end}${end === 'FAILED' ? ` (${await tetherState(h, id)})` : ''}`);
  if (end === 'RUNNING') problems.push(`workflow still running after ${h.deadlineMs / 1000} s`);
  else if ((end === 'COMPLETED' && state !== 'attached') || ((end === 'FAILED' || end === 'NOT_STARTED') && state !== 'absent')) problems.push(`workflow ${end} but the stores say ${state}`);
  if (!o.expect.includes(state as 'attached' | 'absent')) problems.push(`ended ${state}, expected ${o.expect.join(' or ')}`);
  if (o.errorMatch && end === 'FAILED') {
    const message = await h.stack.client.workflow.getHandle(id).result().then(() => '', (err: Error) => `${err.message} ${(err.cause as Error | undefined)?.message ?? ''}`);
    if (!o.errorMatch.test(message)) problems.push(`failure reason ${JSON.stringify(message)} does not match ${o.errorMatch}`);
  }
  if (checked.disagreements.length || checked.inFlight.length) problems.push(`checker:\n${checked.text}`);
  problems.push(...(await tidy(h, [{ server: o.server, volume: o.volume }])));
  return result(h, scenario, run, {
    passed: problems.length === 0,
    converged: end !== 'RUNNING' && !checked.disagreements.length && !checked.inFlight.length,
    outcome: state === 'attached' ? 'attached' : state === 'absent' ? 'rolled-back' : state,
    leaked: checked.disagreements.length + checked.inFlight.length + (state.startsWith('in-between') ? 1 : 0) + (end === 'RUNNING' ? 1 : 0),
    convergeMs: end === 'RUNNING' ? null : Date.now() - o.since,
    notes: o.notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  });
}

/**
 * Restarts `worker` with TETHER_FAULTS (rules with a count), runs `body`. When every rule was used up
 * (`consumed`), the process behaves normally again and only forgets the variable for its next start;
 * otherwise it is restarted without it.
 */
async function withFaults(h: Harness, worker: WorkerName, faults: string, body: () => Promise<CaseResult>, consumed: (r: CaseResult) => boolean): Promise<CaseResult> {
  await h.stack.restartWorkerWith(worker, { TETHER_FAULTS: faults });
  let r: CaseResult | undefined;
  try {
    r = await body();
    return r;
  } finally {
    if (r && consumed(r)) h.stack.workers[worker].extraEnv = {};
    else {
      await h.stack.restartWorkerWith(worker, {});
      await h.stack.waitHealthy(120_000);
    }
  }
}

const libvirtRefuses: FaultScenario = {
  name: 'fault libvirt refuses the attach (TETHER_FAULTS=attachDisk:before:1)',
  slow: false,
  async run(h, run, server) {
    const volume = await newVolume(h, 'chaos-libvirt-refuses');
    return withFaults(h, 'compute-agent', 'attachDisk:before:1', async () => {
      const since = Date.now();
      const answer = await apiAttach(h, server, volume);
      return finishAttach(h, this.name, run, { server, volume, since, expect: ['absent'], notes: [`API: ${describeAnswer(answer)}`], errorMatch: /Injected fault before step attachDisk/ });
    }, (r) => r.passed);
  },
};

const blockStorageRefuses: FaultScenario = {
  name: 'fault block storage refuses (TETHER_FAULTS=reserveVolume:before:1,initializeConnection:after:1)',
  slow: true,
  async run(h, run, server) {
    const v1 = await newVolume(h, 'chaos-bs-refuses-reserve');
    const v2 = await newVolume(h, 'chaos-bs-refuses-init');
    return withFaults(h, 'control-plane', 'reserveVolume:before:1,initializeConnection:after:1', async () => {
      const since = Date.now();
      // reserveVolume fails before the reservation point: the POST itself is refused, after the rollback.
      const a1 = await apiAttach(h, server, v1);
      const r1 = await finishAttach(h, this.name, run, { server, volume: v1, since, expect: ['absent'], notes: [`reserveVolume refused → API ${describeAnswer(a1)}`], errorMatch: /Injected fault before step reserveVolume/ });
      // Not the client's fault, so a 5xx is fair; but it must be a definite answer (a fault body), after the rollback.
      if (a1.status === 0 || a1.status < 400 || !/"message"/.test((a1 as { text?: string }).text ?? '')) {
        r1.passed = false;
        r1.failure = [r1.failure, `the POST answered ${describeAnswer(a1)}, expected a refusal with a fault body`].filter(Boolean).join('; ');
      }
      const a2 = await apiAttach(h, server, v2);
      const r2 = await finishAttach(h, this.name, run, { server, volume: v2, since, expect: ['absent'], notes: [`initializeConnection refused → API ${describeAnswer(a2)}`], errorMatch: /Injected fault after step initializeConnection/ });
      return { ...r2, passed: r1.passed && r2.passed, notes: [...r1.notes, ...r2.notes], leaked: r1.leaked + r2.leaked, ...(r1.failure || r2.failure ? { failure: [r1.failure, r2.failure].filter(Boolean).join('; ') } : {}) };
    }, (r) => r.passed);
  },
};

const blockStorageHangs: FaultScenario = {
  name: 'fault block storage does not answer past startToClose (volume row locked 35 s in reserveVolume)',
  slow: true,
  async run(h, run, server) {
    const volume = await newVolume(h, 'chaos-bs-hangs');
    const point = new PausePoint(h.stack.pauseDir, 'reserveVolume', 'before');
    await point.arm();
    const request = apiAttach(h, server, volume);
    const notes: string[] = [];
    const since = Date.now();
    if (await point.waitClaimed(60_000)) {
      const lock = await h.stack.db.connect();
      lock.on('error', () => undefined); // a checked-out client has no listener of the pool's
      try {
        await lock.query('BEGIN');
        await lock.query('SELECT id FROM volumes WHERE id = $1 FOR UPDATE', [volume.id]);
        await point.release();
        await sleep(35_000);
        await lock.query('COMMIT');
      } finally {
        lock.release();
        await point.release();
      }
      notes.push('volume row locked for 35 s while reserveVolume ran (start-to-close 30 s)');
    } else {
      await point.release();
      notes.push('reserveVolume was never reached');
    }
    notes.push(`API: ${describeAnswer(await request)}`);
    return finishAttach(h, this.name, run, { server, volume, since, expect: ['attached', 'absent'], notes });
  },
};

function sigstop(worker: WorkerName, step: string, holdMs: number, why: string): FaultScenario {
  return {
    name: `fault SIGSTOP ${worker} in ${step} for ${holdMs / 1000} s (${why}), then SIGCONT`,
    slow: true,
    async run(h, run, server) {
      const volume = await newVolume(h, `chaos-sigstop-${worker}`);
      const point = new PausePoint(h.stack.pauseDir, step, 'after');
      await point.arm();
      const request = apiAttach(h, server, volume);
      const notes: string[] = [];
      let since = Date.now();
      if (await point.waitClaimed(60_000)) {
        h.stack.workers[worker].signal('SIGSTOP');
        since = Date.now();
        await point.release(); // seen when it runs again
        await sleep(holdMs);
        h.stack.workers[worker].signal('SIGCONT');
        notes.push(`stopped right after ${step} did its work`);
      } else {
        await point.release();
        notes.push(`${step} was never reached`);
      }
      notes.push(`API: ${describeAnswer(await request)}`);
      return finishAttach(h, this.name, run, { server, volume, since, expect: ['attached', 'absent'], notes });
    },
  };
}

const virtioIgnored: FaultScenario = {
  name: 'fault guest ignores the virtio unplug (attach --device /dev/vdb, detach)',
  slow: true,
  async run(h, run, server) {
    const volume = await newVolume(h, 'chaos-virtio');
    const notes: string[] = [];
    const problems: string[] = [];
    // each run its own name: the disk of an earlier run stays (the guest never lets it go)
    const a = await apiAttach(h, server, volume, `/dev/vd${String.fromCharCode(97 + run)}`);
    notes.push(`attach: ${describeAnswer(a)}`);
    const attachEnd = (await waitClosed(h, [attachWorkflowId(server.uuid, volume.id)]))[attachWorkflowId(server.uuid, volume.id)];
    if (attachEnd !== 'COMPLETED') {
      problems.push(`the virtio attach ended ${attachEnd}`);
    }
    const since = Date.now();
    const d = await apiDetach(h, server, volume);
    notes.push(`detach: ${describeAnswer(d)}`);
    const id = detachWorkflowId(server.uuid, volume.id);
    const end = (await waitClosed(h, [id]))[id]!;
    const state = classify(await retrying(() => pairState(h, server.uuid, volume.id)));
    const checked = await check(h);
    notes.push(`detach workflow ${end} (${await tetherState(h, id)})`);
    if (end !== 'FAILED') problems.push(`the detach ended ${end}, expected FAILED (the guest keeps the disk)`);
    if (state !== 'attached') problems.push(`the stores say ${state}, expected attached (in-use, disk present)`);
    if (checked.disagreements.length || checked.inFlight.length) problems.push(`checker:\n${checked.text}`);
    // The disk cannot leave a running OS-less guest; it stays (consistently) attached to this server.
    return result(h, this.name, run, {
      passed: problems.length === 0,
      converged: end !== 'RUNNING' && !checked.disagreements.length && !checked.inFlight.length,
      outcome: state === 'attached' ? 'kept-attached' : state,
      leaked: checked.disagreements.length + checked.inFlight.length + (state.startsWith('in-between') ? 1 : 0),
      convergeMs: end === 'RUNNING' ? null : Date.now() - since,
      notes,
      ...(problems.length ? { failure: problems.join('; ') } : {}),
    });
  },
};

export const FAULT_SCENARIOS: FaultScenario[] = [
  libvirtRefuses,
  blockStorageRefuses,
  blockStorageHangs,
  sigstop('compute-agent', 'attachDisk', 40_000, 'heartbeat timeout 30 s'),
  sigstop('control-plane', 'reserveVolume', 35_000, 'start-to-close 30 s'),
  virtioIgnored,
];

export { tidy };
