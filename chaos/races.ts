/**
 * Concurrency and races, all through the HTTP API as clients would send them:
 *   - N concurrent attaches to one instance: N distinct devices, none lost;
 *   - one volume to two instances at once: exactly one wins (both when multiattach);
 *   - attach and detach of the same pair interleaved;
 *   - the same request repeated concurrently: one attachment;
 *   - a burst of attaches to many instances at once.
 * Each ends with every workflow closed, every pair attached or absent everywhere, and a clean checker.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance, Volume } from '../src/domain/types.ts';
import { liveBdmsOfInstance } from '../src/db/block-device-mappings.ts';
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
  result,
  retrying,
  tidy,
  waitClosed,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
} from './harness.ts';
import type { CaseResult } from './report.ts';

export interface RaceScenario {
  name: string;
  run(h: Harness, run: number, o: { short: boolean }): Promise<CaseResult>;
}

const is5xxOrNone = (a: HttpAnswer | HttpFailure) => a.status === 0 || a.status >= 500;

/** Waits for every attach/detach workflow of the pairs, classifies them, runs the checker. */
async function settle(h: Harness, pairs: Array<{ server: Instance; volume: Volume; shared?: boolean }>) {
  const ids = pairs.flatMap((p) => [attachWorkflowId(p.server.uuid, p.volume.id), detachWorkflowId(p.server.uuid, p.volume.id)]);
  const ends = await waitClosed(h, ids);
  const running = Object.entries(ends).filter(([, e]) => e === 'RUNNING').map(([id]) => id);
  const states = await Promise.all(pairs.map(async (p) => classify(await retrying(() => pairState(h, p.server.uuid, p.volume.id)), { volumeShared: p.shared ?? false })));
  const checked = await check(h);
  return { ends, running, states, checked };
}

function finish(
  h: Harness,
  name: string,
  run: number,
  since: number,
  s: Awaited<ReturnType<typeof settle>>,
  problems: string[],
  notes: string[],
  outcome: string,
): CaseResult {
  const between = s.states.filter((x) => x.startsWith('in-between'));
  if (s.running.length) problems.push(`still running: ${s.running.join(', ')}`);
  if (between.length) problems.push(...between);
  if (s.checked.disagreements.length || s.checked.inFlight.length) problems.push(`checker:\n${s.checked.text}`);
  return result(h, name, run, {
    passed: problems.length === 0,
    converged: s.running.length === 0 && !s.checked.disagreements.length && !s.checked.inFlight.length,
    outcome,
    leaked: s.checked.disagreements.length + s.checked.inFlight.length + between.length + s.running.length,
    convergeMs: s.running.length ? null : Date.now() - since,
    notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  });
}

const concurrentOnOne: RaceScenario = {
  name: 'race concurrent attaches to one instance',
  async run(h, run, { short }) {
    const n = short ? 5 : 12;
    const server = h.servers[0]!;
    const volumes = await Promise.all(Array.from({ length: n }, (_, i) => newVolume(h, `chaos-concurrent-${i}`)));
    const since = Date.now();
    const answers = await Promise.all(volumes.map((v) => apiAttach(h, server, v)));
    const s = await settle(h, volumes.map((volume) => ({ server, volume })));
    const problems: string[] = [];
    answers.forEach((a, i) => {
      if (a.status !== 200) problems.push(`attach ${i}: ${describeAnswer(a)}`);
    });
    const lost = s.states.filter((x) => x !== 'attached').length;
    if (lost) problems.push(`${lost} of ${n} attaches did not end attached`);
    const bdms = (await liveBdmsOfInstance(h.stack.db, server.uuid)).filter((b) => volumes.some((v) => v.id === b.volumeId));
    const devices = new Set(bdms.map((b) => b.deviceName));
    if (devices.size !== n) problems.push(`${devices.size} distinct devices for ${n} attaches: ${[...devices].join(', ')}`);
    const notes = [`${n} attaches → devices ${[...devices].sort().join(' ')}`];
    // and all of them detached concurrently
    const detached = await Promise.all(volumes.map((v) => apiDetach(h, server, v)));
    detached.forEach((a, i) => {
      if (a.status !== 202) problems.push(`detach ${i}: ${describeAnswer(a)}`);
    });
    const s2 = await settle(h, volumes.map((volume) => ({ server, volume })));
    const left = s2.states.filter((x) => x !== 'absent').length;
    if (left) problems.push(`${left} of ${n} concurrent detaches did not end detached`);
    problems.push(...(await tidy(h, volumes.map((volume) => ({ server, volume })))));
    return finish(h, this.name, run, since, s2, problems, notes, lost || left ? 'lost' : `${n} attached, ${n} detached`);
  },
};

function sameVolumeTwoInstances(multiattach: boolean): RaceScenario {
  return {
    name: `race one ${multiattach ? 'multiattach ' : ''}volume to two instances at once`,
    async run(h, run) {
      const [a, b] = [h.servers[0]!, h.servers[1]!];
      const volume = await newVolume(h, `chaos-two-${multiattach ? 'multi' : 'single'}`, { multiattach });
      const since = Date.now();
      const answers = await Promise.all([apiAttach(h, a, volume), apiAttach(h, b, volume)]);
      const s = await settle(h, [{ server: a, volume, shared: true }, { server: b, volume, shared: true }]);
      const problems: string[] = [];
      const winners = s.states.filter((x) => x === 'attached').length;
      const want = multiattach ? 2 : 1;
      if (winners !== want) problems.push(`${winners} instance(s) ended with the volume, expected ${want}`);
      answers.forEach((x, i) => {
        if (is5xxOrNone(x)) problems.push(`attach to ${i === 0 ? 'A' : 'B'}: ${describeAnswer(x)}`);
      });
      const v = await h.stack.blockStorage.getVolume(volume.id);
      if (v.status !== 'in-use' || v.attachments.length !== want) problems.push(`volume ${v.status} with ${v.attachments.length} attachment(s)`);
      const notes = [`answers: A ${describeAnswer(answers[0]!).slice(0, 80)} | B ${describeAnswer(answers[1]!).slice(0, 80)}`];
      problems.push(...(await tidy(h, [{ server: a, volume }, { server: b, volume }])));
      return finish(h, this.name, run, since, s, problems, notes, `${winners} won`);
    },
  };
}

const interleaved: RaceScenario = {
  name: 'race attach and detach of one pair interleaved',
  async run(h, run, { short }) {
    const server = h.servers[1]!;
    const volume = await newVolume(h, 'chaos-interleaved');
    const rounds = short ? 3 : 6;
    const since = Date.now();
    const notes: string[] = [];
    const problems: string[] = [];
    for (let i = 0; i < rounds; i++) {
      const delay = h.rnd.int(0, 300);
      const attach = apiAttach(h, server, volume);
      await sleep(delay);
      const detach = await apiDetach(h, server, volume);
      const a = await attach;
      notes.push(`round ${i + 1}: detach after ${delay} ms → attach ${a.status}, detach ${detach.status}`);
      if (is5xxOrNone(a) || is5xxOrNone(detach)) problems.push(`round ${i + 1}: attach ${describeAnswer(a)} / detach ${describeAnswer(detach)}`);
      // the next round starts when this one is over
      await waitClosed(h, [attachWorkflowId(server.uuid, volume.id), detachWorkflowId(server.uuid, volume.id)]);
      const state = classify(await retrying(() => pairState(h, server.uuid, volume.id)));
      if (detach.status === 202 && state !== 'absent') problems.push(`round ${i + 1}: the detach was accepted after the attach, yet the pair is ${state}`);
      if (state === 'attached') await apiDetach(h, server, volume).then(() => waitClosed(h, [detachWorkflowId(server.uuid, volume.id)]));
    }
    const s = await settle(h, [{ server, volume }]);
    problems.push(...(await tidy(h, [{ server, volume }])));
    return finish(h, this.name, run, since, s, problems, notes, s.states[0] ?? '?');
  },
};

const repeated: RaceScenario = {
  name: 'race the same attach request repeated concurrently',
  async run(h, run, { short }) {
    const server = h.servers[2] ?? h.servers[0]!;
    const volume = await newVolume(h, 'chaos-repeated');
    const m = short ? 4 : 8;
    const since = Date.now();
    const answers = await Promise.all(Array.from({ length: m }, () => apiAttach(h, server, volume)));
    const s = await settle(h, [{ server, volume }]);
    const problems: string[] = [];
    const bdms = (await liveBdmsOfInstance(h.stack.db, server.uuid)).filter((b) => b.volumeId === volume.id);
    if (bdms.length !== 1) problems.push(`${bdms.length} BDMs for one volume`);
    const devices = new Set(
      answers.flatMap((a) => (a.status === 200 ? [((a as HttpAnswer).json as { volumeAttachment?: { device?: string } })?.volumeAttachment?.device] : [])),
    );
    if (devices.size > 1) problems.push(`the answers name different devices: ${[...devices].join(', ')}`);
    answers.forEach((a, i) => {
      if (is5xxOrNone(a)) problems.push(`request ${i}: ${describeAnswer(a)}`);
    });
    if (s.states[0] !== 'attached') problems.push(`the pair ended ${s.states[0]}`);
    const notes = [`${m} identical POSTs → ${answers.map((a) => a.status).join(' ')}; device ${[...devices].join(',')}`];
    problems.push(...(await tidy(h, [{ server, volume }])));
    return finish(h, this.name, run, since, s, problems, notes, `${bdms.length} BDM`);
  },
};

const burst: RaceScenario = {
  name: 'race a burst of attaches to many instances',
  async run(h, run) {
    const servers = h.servers;
    const volumes = await Promise.all(servers.map((_, i) => newVolume(h, `chaos-burst-${i}`)));
    const since = Date.now();
    const answers = await Promise.all(servers.map((server, i) => apiAttach(h, server, volumes[i]!)));
    const pairs = servers.map((server, i) => ({ server, volume: volumes[i]! }));
    const s = await settle(h, pairs);
    const problems: string[] = [];
    answers.forEach((a, i) => {
      if (a.status !== 200) problems.push(`attach to server ${i}: ${describeAnswer(a)}`);
    });
    const attached = s.states.filter((x) => x === 'attached').length;
    if (attached !== servers.length) problems.push(`${attached} of ${servers.length} attached`);
    problems.push(...(await tidy(h, pairs)));
    return finish(h, this.name, run, since, s, problems, [`${servers.length} instances`], `${attached}/${servers.length} attached`);
  },
};

export const RACE_SCENARIOS: RaceScenario[] = [concurrentOnOne, sameVolumeTwoInstances(false), sameVolumeTwoInstances(true), interleaved, repeated, burst];
