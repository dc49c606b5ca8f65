/**
 * The storm: independent kills at moments no pause point chose. While a steady workload runs through
 * the HTTP API (several clients; attaches, detaches, the same attach repeated at once, an attach and a
 * detach of one pair interleaved, now and then an attach of a volume to a server other than its own),
 * the runner kills parts of the stack at random wall-clock moments for a set time:
 *   - the gap before each event is drawn uniformly in [0, maxGapMs];
 *   - an event SIGKILLs one target drawn uniformly from control-plane, compute-agent, api, temporal,
 *     postgres and libvirtd (unless --no-libvirtd), or two at once (one in four), and restarts them
 *     after 0–2 s down — in the background, so the next event does not wait for the restart; a drawn
 *     target still restarting from an earlier kill is killed once it is back, 0–maxGap later (one such
 *     kill waits per target; further draws of it are dropped and counted);
 *   - storms of 30 s or more also SIGSTOP one worker (control-plane, compute-agent or api) for 31–40 s,
 *     longer than the activity timeouts (start-to-close and heartbeat 30 s), then SIGCONT it.
 * Then every part is made sure to run, every workflow must close, and:
 *   - every (server, volume) pair the workload touched is attached everywhere or absent everywhere;
 *   - every volume's status and attachments match the pairs that ended attached (at most one, not multiattach);
 *   - no rollback was left unfinished (TetherState=failed), no workflow is still running;
 *   - the invariant checker finds nothing; and tether still works (what is attached is detached again).
 * Reported per storm: kills by target, requests by answer, workflows by outcome, time to converge
 * after the last kill (or SIGCONT), leaks.
 *
 * Every choice comes from the case's seeded stream (separate streams for the kill schedule and each
 * client), drawn whatever the stack's state, so `--seed S --only storm` replays the same draws; when
 * a kill lands still depends on how long restarts take, so the moments differ a little between replays.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Instance, Volume } from '../src/domain/types.ts';
import {
  attachWorkflowId,
  check,
  classify,
  COMPUTE_MICROVERSION,
  detachWorkflowId,
  http,
  newVolume,
  pairState,
  result,
  retrying,
  runningWorkflows,
  tidy,
  waitClosed,
  type Harness,
  type HttpAnswer,
  type HttpFailure,
} from './harness.ts';
import { diskElements } from '../src/host/domain-disks.ts';
import { liveBdmsOfInstance } from '../src/db/block-device-mappings.ts';
import type { Random } from './random.ts';
import type { CaseResult } from './report.ts';
import { TARGETS, type Target } from './stack.ts';

export interface StormOptions {
  /** How long kills go on, and the workload with them. */
  seconds: number;
  /** Largest gap between two kill events (uniform in [0, maxGapMs]). */
  maxGapMs?: number;
  /** Concurrent API clients. */
  clients: number;
  /** Volumes of the workload (spread over the servers, each with a home server). */
  volumes: number;
}

export function stormName(seconds: number): string {
  return `storm random kills for ${seconds} s under a steady workload`;
}

const STOPPABLE = ['control-plane', 'compute-agent', 'api'] as const;
type Stoppable = (typeof STOPPABLE)[number];
/** Longer than every activity's start-to-close (30 s) and heartbeat (30 s) timeout. */
const STOP_MS: readonly [number, number] = [31_000, 40_000];
/** Per request: a client that gets no answer gives up (the operation may still go on). */
const REQUEST_TIMEOUT_MS = 30_000;

type Answer = HttpAnswer | HttpFailure;

function answerClass(a: Answer): '2xx' | '4xx' | '5xx' | 'none' {
  if (a.status === 0) return 'none';
  if (a.status < 300) return '2xx';
  if (a.status < 500) return '4xx';
  return '5xx';
}

class Tally {
  private readonly counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  total(): number {
    return [...this.counts.values()].reduce((a, b) => a + b, 0);
  }
  format(): string {
    return [...this.counts].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}×${n}`).join(' ') || 'none';
  }
}

interface Pair {
  server: Instance;
  volume: Volume;
}

export async function runStorm(h: Harness, run: number, o: StormOptions): Promise<CaseResult> {
  const scenario = stormName(o.seconds);
  const maxGapMs = o.maxGapMs ?? 3_000;
  const notes: string[] = [];
  const problems: string[] = [];
  const targets = TARGETS.filter((t) => !h.stack.cannotKill(t));
  notes.push(`targets: ${targets.join(', ')}${targets.length < TARGETS.length ? ` (not: ${TARGETS.filter((t) => !targets.includes(t)).map((t) => `${t}: ${h.stack.cannotKill(t)}`).join('; ')})` : ''}`);

  // ---- the workload's volumes: each with a home server ----
  const volumes = await Promise.all(Array.from({ length: o.volumes }, (_, i) => newVolume(h, `chaos-storm-${run}-${i}`)));
  const home = (i: number) => h.servers[i % h.servers.length]!;
  const touched = new Map<string, Pair>();
  const touch = (server: Instance, volume: Volume) => touched.set(`${server.uuid}/${volume.id}`, { server, volume });
  volumes.forEach((v, i) => touch(home(i), v));

  const requests = new Tally();
  const t0 = Date.now();
  const end = t0 + o.seconds * 1000;
  const stormStartIso = new Date(t0 - 1000).toISOString();

  const attach = (server: Instance, volume: Volume) =>
    http(h, 'POST', `/v2.1/servers/${server.uuid}/os-volume_attachments`, {
      headers: COMPUTE_MICROVERSION,
      body: { volumeAttachment: { volumeId: volume.id } },
      timeoutMs: REQUEST_TIMEOUT_MS,
    }).then((a) => (requests.add(`POST ${answerClass(a)}`), a));
  const detach = (server: Instance, volume: Volume) =>
    http(h, 'DELETE', `/v2.1/servers/${server.uuid}/os-volume_attachments/${volume.id}`, { headers: COMPUTE_MICROVERSION, timeoutMs: REQUEST_TIMEOUT_MS })
      .then((a) => (requests.add(`DELETE ${answerClass(a)}`), a));

  const ops = new Tally();
  async function client(rnd: Random): Promise<void> {
    while (Date.now() < end) {
      const i = rnd.int(0, volumes.length - 1);
      const volume = volumes[i]!;
      // One attach in ten goes to another server than the volume's own (refused while it is attached there).
      const server = rnd.bool(0.1) ? rnd.pick(h.servers) : home(i);
      touch(server, volume);
      const p = rnd.next();
      if (p < 0.35) {
        ops.add('attach');
        await attach(server, volume);
      } else if (p < 0.65) {
        ops.add('detach');
        await detach(server, volume);
      } else if (p < 0.8) {
        const n = rnd.int(2, 3);
        ops.add('repeated attach');
        await Promise.all(Array.from({ length: n }, () => attach(server, volume)));
      } else {
        const delay = rnd.int(0, 300);
        ops.add('attach+detach');
        const a = attach(server, volume);
        await sleep(delay);
        await Promise.all([a, detach(server, volume)]);
      }
      await sleep(rnd.int(0, 800));
    }
  }

  // ---- the kill schedule ----
  const kills = new Tally();
  const busy = new Set<Target>();
  const background: Array<Promise<void>> = [];
  const restartFailures: string[] = [];
  let lastFaultAt = t0;
  let doubles = 0;
  const stops: string[] = [];

  async function killAndRestart(ts: Target[], downMs: number): Promise<void> {
    try {
      await Promise.all(ts.map((t) => h.stack.kill(t).then(
        () => kills.add(t),
        (err: unknown) => void restartFailures.push(`kill ${t}: ${(err as Error).message}`),
      )));
      lastFaultAt = Date.now();
      await sleep(downMs);
      await Promise.all(ts.map((t) => h.stack.restart(t).catch((err: unknown) => {
        restartFailures.push(`${t}: ${(err as Error).message}`);
      })));
    } finally {
      for (const t of ts) busy.delete(t);
    }
  }

  async function stopAndContinue(w: Stoppable, holdMs: number): Promise<void> {
    const pid = h.stack.workers[w].pid;
    try {
      if (pid === undefined) return;
      process.kill(pid, 'SIGSTOP');
      lastFaultAt = Date.now();
      stops.push(`${w} ${(holdMs / 1000).toFixed(0)} s`);
      await sleep(holdMs);
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        /* gone meanwhile: it exited by itself, which the runner reports */
      }
      lastFaultAt = Date.now();
    } finally {
      busy.delete(w);
    }
  }

  /** A drawn target that is still restarting is killed once it is back, after `delayMs` (at most one waits per target). */
  const deferred = new Set<Target>();
  let dropped = 0;
  async function killWhenBack(t: Target, delayMs: number, downMs: number): Promise<void> {
    deferred.add(t);
    try {
      while (busy.has(t) && Date.now() < end) await sleep(50);
      await sleep(delayMs);
      if (busy.has(t) || Date.now() >= end) {
        dropped++;
        return;
      }
      busy.add(t);
      deferredKills++;
    } finally {
      deferred.delete(t);
    }
    await killAndRestart([t], downMs);
  }
  let deferredKills = 0;

  async function scheduler(rnd: Random): Promise<void> {
    const canStop = o.seconds >= 30;
    const stopEvent = canStop ? rnd.int(0, 3) : -1;
    for (let event = 0; ; event++) {
      await sleep(rnd.int(0, maxGapMs));
      if (Date.now() >= end) return;
      // Every draw is made whatever the state, so a seed gives the same stream of choices.
      const stopNow = canStop && (event === stopEvent || rnd.bool(0.05));
      const drawnStop = rnd.int(0, STOPPABLE.length - 1);
      // The drawn worker, or the next one up when it is still restarting.
      const stopTarget = [0, 1, 2].map((k) => STOPPABLE[(drawnStop + k) % STOPPABLE.length]!).find((w) => !busy.has(w)) ?? STOPPABLE[drawnStop]!;
      const holdMs = rnd.int(STOP_MS[0], STOP_MS[1]);
      const two = rnd.bool(0.25);
      const drawn = rnd.sample(targets, two ? 2 : 1);
      const downMs = rnd.int(0, 2000);
      const laterMs = rnd.int(0, maxGapMs);
      if (stopNow && targets.includes(stopTarget)) {
        if (busy.has(stopTarget)) {
          dropped++;
        } else {
          busy.add(stopTarget);
          background.push(stopAndContinue(stopTarget, holdMs));
        }
        continue;
      }
      if (drawn.length > 1) doubles++;
      const now = drawn.filter((t) => !busy.has(t));
      for (const t of drawn.filter((t) => busy.has(t))) {
        if (deferred.has(t)) dropped++;
        else background.push(killWhenBack(t, laterMs, downMs));
      }
      for (const t of now) busy.add(t);
      if (now.length > 0) background.push(killAndRestart(now, downMs));
    }
  }

  const clientStreams = Array.from({ length: o.clients }, () => h.rnd.fork());
  const killStream = h.rnd.fork();
  await Promise.all([scheduler(killStream), ...clientStreams.map((r) => client(r))]);
  await Promise.all(background);
  const stormMs = Date.now() - t0;

  // ---- restart all: whatever is down comes up ----
  const tRestart = Date.now();
  await h.stack.settled();
  for (const w of STOPPABLE) {
    if (h.stack.workers[w].pid === undefined) {
      await h.stack.restart(w).catch((err: unknown) => restartFailures.push(`${w} (again): ${(err as Error).message}`));
    }
  }
  await h.stack.waitHealthy(180_000);
  if (restartFailures.length) problems.push(`restarts that failed: ${restartFailures.join('; ')}`);
  const restartMs = Date.now() - tRestart;

  // ---- converge: every workflow closes ----
  const pairs = [...touched.values()];
  const ids = pairs.flatMap((p) => [attachWorkflowId(p.server.uuid, p.volume.id), detachWorkflowId(p.server.uuid, p.volume.id)]);
  const ends = await waitClosed(h, ids);
  let stillRunning = Object.entries(ends).filter(([, e]) => e === 'RUNNING').map(([id]) => id);
  // Visibility may lag behind a closed workflow a little; anything of this stack still running counts.
  const runDeadline = Date.now() + 30_000;
  let running = await retrying(() => runningWorkflows(h));
  while (running.length > 0 && Date.now() < runDeadline) {
    await sleep(1000);
    running = await retrying(() => runningWorkflows(h));
  }
  stillRunning = [...new Set([...stillRunning, ...running])];

  // ---- the stores ----
  const states = await Promise.all(pairs.map(async (p) => ({ p, state: classify(await retrying(() => pairState(h, p.server.uuid, p.volume.id)), { volumeShared: true }) })));
  const between = states.filter((s) => s.state.startsWith('in-between'));
  for (const s of between) problems.push(`${s.p.volume.id} on ${s.p.server.uuid}: ${s.state}`);
  const volumeProblems: string[] = [];
  for (const v of volumes) {
    const attachedTo = states.filter((s) => s.p.volume.id === v.id && s.state === 'attached').map((s) => s.p.server.uuid);
    const now = await retrying(() => h.stack.blockStorage.getVolume(v.id));
    const want = attachedTo.length > 0 ? 'in-use' : 'available';
    if (attachedTo.length > 1) volumeProblems.push(`${v.id} attached to ${attachedTo.length} servers (not multiattach)`);
    if (now.status !== want) volumeProblems.push(`${v.id} is ${now.status}, its pairs say ${want}`);
    if (now.attachments.length !== attachedTo.length) volumeProblems.push(`${v.id} has ${now.attachments.length} attachment(s) at the block storage, ${attachedTo.length} pair(s) attached`);
  }
  problems.push(...volumeProblems);
  const checked = await check(h);
  const convergedAt = Date.now();
  if (stillRunning.length) problems.push(`workflows still running: ${stillRunning.join(', ')}`);
  if (checked.disagreements.length || checked.inFlight.length) problems.push(`checker:\n${checked.text}`);

  // ---- what the workflows did ----
  const workflows = new Tally();
  const unfinished: string[] = [];
  await retrying(async () => {
    for await (const w of h.stack.client.workflow.list({ query: `TaskQueue = '${h.stack.controlTaskQueue}' AND StartTime >= '${stormStartIso}'` })) {
      if (w.type !== 'attachVolume' && w.type !== 'detachVolume') continue;
      const sa = w.searchAttributes?.['TetherState'];
      const state = Array.isArray(sa) ? String(sa[0]) : '?';
      const op = w.type === 'attachVolume' ? 'attach' : 'detach';
      workflows.add(`${op} ${w.status.name === 'RUNNING' ? 'running' : state}`);
      if (state === 'failed') unfinished.push(`${w.workflowId} (${w.runId})`);
    }
  });
  if (unfinished.length) problems.push(`rollbacks left unfinished (TetherState=failed): ${unfinished.join(', ')}`);

  // tether must still work: what the storm left attached is detached again, the volumes deleted.
  problems.push(...(await tidy(h, pairs)));

  const attachedCount = workflows.get('attach attached');
  const rolledBack = workflows.get('attach rolled-back');
  const detachedCount = workflows.get('detach detached');
  const leaked = checked.disagreements.length + checked.inFlight.length + between.length + volumeProblems.length + stillRunning.length;
  notes.push(
    `storm ${(stormMs / 1000).toFixed(1)} s (kills for ${o.seconds} s, gaps 0–${maxGapMs / 1000} s), ${o.clients} clients, ${volumes.length} volumes on ${h.servers.length} servers, ${pairs.length} pairs touched`,
    `kills: ${kills.total()} (${kills.format()}), ${doubles} double draws, ${deferredKills} of a target just back from its restart, ${dropped} draws dropped (target still down); SIGSTOP: ${stops.length ? stops.join(', ') : 'none'}`,
    `operations: ${ops.format()}; requests: ${requests.format()}`,
    `workflows: ${workflows.format()}`,
    `restart all ${(restartMs / 1000).toFixed(1)} s; converged ${((convergedAt - lastFaultAt) / 1000).toFixed(1)} s after the last kill; leaks ${leaked}`,
  );
  return result(h, scenario, run, {
    passed: problems.length === 0,
    converged: stillRunning.length === 0 && !checked.disagreements.length && !checked.inFlight.length,
    outcome: `${kills.total()} kills${stops.length ? ` + ${stops.length} stop` : ''}: ${attachedCount} attached, ${rolledBack} rolled back, ${detachedCount} detached`,
    leaked,
    convergeMs: stillRunning.length ? null : convergedAt - lastFaultAt,
    notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  });
}

// ---- many attaches at once ---------------------------------------------------------------------

export interface ConcurrentOptions {
  /** Servers (running OS-less domains created for the case). */
  instances: number;
  /** Attaches, spread evenly over the servers, all POSTed at once. */
  attaches: number;
}

/** How many times one attach is POSTed when the API keeps answering 503 with Retry-After. */
const POST_ATTEMPTS = 60;

export function concurrentName(o: ConcurrentOptions): string {
  return `concurrent ${o.attaches} attaches over ${o.instances} instances at once`;
}

/**
 * `attaches` volumes POSTed to `instances` servers all at once (no kill): every POST must end
 * answered 200 with a device (a 503 with Retry-After is the API's "not confirmed yet": asked again,
 * it must join the attach in flight), never a 500 or a dropped connection, no server may get a device name twice (in the answers, the BDMs, the persistent and
 * the live XML), every pair must end attached everywhere, the checker clean; then all of them are
 * detached at once, which must also converge. Reported: answers by status, devices per server, the
 * time until every workflow closed.
 */
export async function runConcurrentAttaches(h: Harness, run: number, o: ConcurrentOptions): Promise<CaseResult> {
  const scenario = concurrentName(o);
  const notes: string[] = [];
  const problems: string[] = [];
  const tBoot = Date.now();
  const servers: Instance[] = [];
  // Servers in batches (each a TCG domain being defined and started).
  for (let i = 0; i < o.instances; i += 10) {
    servers.push(...(await Promise.all(Array.from({ length: Math.min(10, o.instances - i) }, async (_, k) => {
      const { instance, handle } = await h.stack.service.createServer({ name: `chaos-many-${run}-${i + k}` });
      await handle.result();
      return h.stack.service.resolveServer(instance.uuid);
    }))));
  }
  const volumes: Volume[] = [];
  for (let i = 0; i < o.attaches; i += 50) {
    volumes.push(...(await Promise.all(Array.from({ length: Math.min(50, o.attaches - i) }, (_, k) => newVolume(h, `chaos-many-${run}-${i + k}`)))));
  }
  notes.push(`${servers.length} servers and ${volumes.length} volumes made in ${((Date.now() - tBoot) / 1000).toFixed(1)} s`);
  const pairs: Pair[] = volumes.map((volume, i) => ({ server: servers[i % servers.length]!, volume }));

  // Every answer counted; a 503 with Retry-After is asked again after that many seconds (a client that
  // follows the protocol), the same request: it must join the attach in flight, never attach twice.
  const answers = new Tally();
  const finals = new Tally();
  let retried = 0;
  const t0 = Date.now();
  const results = await Promise.all(pairs.map(async ({ server, volume }) => {
    for (let attempt = 1; ; attempt++) {
      const a = await http(h, 'POST', `/v2.1/servers/${server.uuid}/os-volume_attachments`, {
        headers: COMPUTE_MICROVERSION,
        body: { volumeAttachment: { volumeId: volume.id } },
        timeoutMs: 600_000,
      });
      answers.add(a.status === 0 ? 'none' : String(a.status));
      const retryAfter = a.status === 503 ? Number((a as HttpAnswer).retryAfter) : NaN;
      if (!(retryAfter >= 0) || attempt >= POST_ATTEMPTS) {
        finals.add(a.status === 0 ? 'none' : String(a.status));
        return a;
      }
      retried++;
      await sleep(retryAfter * 1000);
    }
  }));
  const answeredMs = Date.now() - t0;
  const ends = await waitClosed(h, pairs.map((p) => attachWorkflowId(p.server.uuid, p.volume.id)), Math.max(h.deadlineMs, 900_000));
  const closedMs = Date.now() - t0;
  const endTally = new Tally();
  for (const e of Object.values(ends)) endTally.add(e);
  notes.push(`POST answers: ${answers.format()}; ${retried} asked again after a 503's Retry-After; last answers: ${finals.format()} (all in ${(answeredMs / 1000).toFixed(1)} s); attach workflows: ${endTally.format()} (all closed in ${(closedMs / 1000).toFixed(1)} s)`);
  results.forEach((a, i) => {
    if (a.status !== 200) problems.push(`POST ${pairs[i]!.volume.id} to ${pairs[i]!.server.name}: ${a.status === 0 ? (a as HttpFailure).error : `${a.status} ${(a as HttpAnswer).text.slice(0, 160)}`}`);
  });

  // Devices: distinct per server in the answers, the BDMs and both XMLs; every pair attached everywhere.
  let duplicates = 0;
  let attached = 0;
  for (const server of servers) {
    const mine = pairs.filter((p) => p.server.uuid === server.uuid);
    const answered = results.filter((_, i) => pairs[i]!.server.uuid === server.uuid).map((a) => ((a as HttpAnswer).json as { volumeAttachment?: { device?: string } } | null)?.volumeAttachment?.device).filter(Boolean);
    const bdmDevices = (await liveBdmsOfInstance(h.stack.db, server.uuid)).map((b) => b.deviceName);
    const live = diskElements(await h.stack.libvirt.getXml(server.uuid)).map((d) => d.target);
    const config = diskElements(await h.stack.libvirt.getXml(server.uuid, { inactive: true })).map((d) => d.target);
    for (const [what, list] of [['answers', answered], ['BDMs', bdmDevices], ['live XML', live], ['persistent XML', config]] as const) {
      const dup = list.length - new Set(list).size;
      if (dup > 0) {
        duplicates += dup;
        problems.push(`${server.name}: ${dup} duplicate device name(s) in the ${what}: ${list.join(' ')}`);
      }
    }
    for (const p of mine) {
      const state = classify(await retrying(() => pairState(h, server.uuid, p.volume.id)));
      if (state === 'attached') attached++;
      else problems.push(`${server.name} / ${p.volume.id}: ${state}`);
    }
  }
  notes.push(`${attached}/${pairs.length} pairs attached everywhere; duplicate devices: ${duplicates}`);
  const checked = await check(h);
  if (checked.disagreements.length || checked.inFlight.length) problems.push(`checker:\n${checked.text}`);

  // All detached at once, then gone.
  const t1 = Date.now();
  const detachAnswers = new Tally();
  await Promise.all(pairs.map(({ server, volume }) =>
    http(h, 'DELETE', `/v2.1/servers/${server.uuid}/os-volume_attachments/${volume.id}`, { headers: COMPUTE_MICROVERSION, timeoutMs: 600_000 })
      .then((a) => detachAnswers.add(a.status === 0 ? 'none' : String(a.status))),
  ));
  const detachEnds = await waitClosed(h, pairs.map((p) => detachWorkflowId(p.server.uuid, p.volume.id)), Math.max(h.deadlineMs, 900_000));
  const detachTally = new Tally();
  for (const e of Object.values(detachEnds)) detachTally.add(e);
  notes.push(`DELETE answers: ${detachAnswers.format()}; detach workflows: ${detachTally.format()} (all closed in ${((Date.now() - t1) / 1000).toFixed(1)} s)`);
  problems.push(...(await tidy(h, pairs)));
  const after = await check(h);
  if (after.disagreements.length || after.inFlight.length) problems.push(`checker after the detaches:\n${after.text}`);
  for (const server of servers) await h.stack.service.deleteServer(server.uuid).catch((err: Error) => problems.push(`deleting ${server.name}: ${err.message}`));

  return result(h, scenario, run, {
    passed: problems.length === 0,
    converged: Object.values(ends).every((e) => e === 'COMPLETED') && checked.disagreements.length === 0 && checked.inFlight.length === 0,
    outcome: `${attached}/${pairs.length} attached, ${duplicates} duplicate devices`,
    leaked: checked.disagreements.length + checked.inFlight.length + (pairs.length - attached),
    convergeMs: closedMs,
    notes,
    ...(problems.length ? { failure: problems.slice(0, 20).join('; ') + (problems.length > 20 ? `; … ${problems.length - 20} more` : '') } : {}),
  });
}
