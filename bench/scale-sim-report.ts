/**
 * The scale simulation's results (docs/scale.json, written by `npm run scale` = bench/scale-sim.ts)
 * and what docs/scale.md shows of them, rendered by `npm run docs` (scripts/generate-docs.ts): the
 * tables of the run, and the linear extrapolation to 100 000 instances on 1000 hosts, each figure
 * computed here from the measured ones.
 */

export interface ScaleStep {
  queues: number;
  hosts: number;
  instancesPerHost: number;
  hostsProcesses: number;
  /** rows inserted (and, at the first step, agents started) → every queue served */
  allServingMs: number;
  idleWindowS: number;
  server: { processes: number; rssMb: number; idleCpuPct: number };
  /** every simulated host together (all hosts processes) */
  agents: { rssMb: number; heapMb: number; idleCpuPct: number; rssKbPerQueue: number };
  control: { rssMb: number; idleCpuPct: number };
  /** poll RPCs per second answered by the frontends in the idle window (null: no metrics endpoint) */
  pollsPerSecond: number | null;
  /** poll RPCs counted since the server started, by operation */
  pollsByOperation: Record<string, number>;
  /** long polls held open at the end of the window, by operation */
  pendingPolls: Record<string, number>;
  postgres: { total: number; byApplication: Record<string, number>; maxConnections: number };
  machine: { loadAverage1mBefore: number; loadAverage1mAfter: number; memAvailableMb: number; cpus: number };
}

export interface AttachBurst {
  workflow: string;
  /** instance queues served when the burst ran */
  atQueues?: number;
  attaches: number;
  instances: number;
  hosts: number;
  /** first request → the last reservation answered (what Nova's POST waits for) */
  dispatchedMs: number | null;
  /** first request → the last saga finished (null: not within timedOutAfterMs) */
  drainedMs: number | null;
  timedOutAfterMs?: number;
  /** reservations answered (within the timeout) */
  reservedInTime?: number;
  reservationMs: { p50: number | null; p99: number | null };
  completionMs: { p50: number | null; p99: number | null };
  attachesPerSecond: number;
  succeeded: number;
  failed: number;
  failures: string[];
  /**
   * Answers "not confirmed yet" (the API's 503 AttachNotConfirmed, Retry-After) the callers got before
   * their reservation: each asked again after Retry-After, as a client does, and joined its attach.
   */
  notConfirmedAnswers?: number;
  /** Set when the burst was measured by a run of its own (`npm run scale -- --burst-only`), not with the steps. */
  run?: { command: string; date: string; commit: string };
  database: { bdmsAttached: number; attachmentsAttached: number; volumesInUse: number };
  serverCpuSec: number;
  /** CPU seconds spent during the burst by the control-plane worker, the hosts processes, the driver (API side: TetherService and its client) */
  cpuSec?: { control: number; agents: number; driver: number };
  pollRpcs: number;
  postgresConnectionsAfter: number;
  loadAverage1m: { before: number; after: number };
}

export interface ScaleTargetResult {
  target: 'dev' | 'cluster';
  /** the command and start of the run that measured this target (runs of one target at a time are merged) */
  command?: string;
  date?: string;
  description: string;
  skipped?: string;
  error?: string;
  frontends?: number;
  metricsScraped?: number;
  stoppedBefore?: { queues: number; why: string };
  steps: ScaleStep[];
  attaches?: AttachBurst;
}

export interface ScaleSimResults {
  command: string;
  date: string;
  commit?: string;
  machine: {
    cpus: number;
    memTotalMb: number;
    loadAverageAtStart: number[];
    loadAverageAtEnd?: number[];
    /** the runs merged into this file before this one (--merge) */
    earlierRuns?: Array<{ date: string; command: string; loadAverageAtStart: number[]; loadAverageAtEnd?: number[] }>;
  };
  postgres: string;
  settings: { hosts: number; processes: number; steps: number[]; attaches: number; idleWindowMs: number; agentPoolMax: number };
  targets: ScaleTargetResult[];
  durationS?: number;
}

const NAMES: Record<string, string> = { dev: 'dev server', cluster: 'cluster (2 nodes, PostgreSQL, mTLS)' };
const n = (x: number | null | undefined, unit = '') => (x === null || x === undefined || !Number.isFinite(x) ? '—' : `${x.toLocaleString('en-US')}${unit}`);
const r1 = (x: number) => Math.round(x * 10) / 10;
const r0 = (x: number) => Math.round(x);

/** The run: command, machine, what ran for each target. */
export function scaleRunLine(r: ScaleSimResults): string {
  const lines = [
    `\`${r.command}\`${r.commit ? ` at commit \`${r.commit}\`` : ''}, ${r.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')}${r.durationS ? `, ${r.durationS} s` : ''}: ` +
      `${r.machine.cpus} cores, ${n(r.machine.memTotalMb)} MB of memory, shared with other work — load average (1/5/15 min) ${r.machine.loadAverageAtStart.join(' / ')} at the start` +
      `${r.machine.loadAverageAtEnd ? ` and ${r.machine.loadAverageAtEnd.join(' / ')} at the end` : ''}. ` +
      `${r.settings.hosts} simulated hosts in ${r.settings.processes} processes; PostgreSQL: ${r.postgres}; idle window ${r.settings.idleWindowMs / 1000} s.`,
    ...(r.machine.earlierRuns ?? []).map(
      (e) => `Merged with the earlier run \`${e.command}\` of ${e.date.slice(0, 16).replace('T', ' ')} UTC: load average ${e.loadAverageAtStart.join(' / ')} at its start${e.loadAverageAtEnd ? ` and ${e.loadAverageAtEnd.join(' / ')} at its end` : ''}.`,
    ),
    '',
  ];
  for (const t of r.targets) {
    const ran = t.steps.map((s) => n(s.queues)).join(', ');
    let line = `- **${NAMES[t.target] ?? t.target}**: `;
    if (t.skipped) line += `not run: ${t.skipped}.`;
    else {
      line += `${t.description}${t.command && t.command !== r.command ? ` (\`${t.command}\`, ${String(t.date).slice(0, 16).replace('T', ' ')} UTC)` : ''}. Steps run: ${ran || 'none'} queues`;
      if (t.stoppedBefore) line += `; stopped before ${n(t.stoppedBefore.queues)}: ${t.stoppedBefore.why}`;
      const missing = r.settings.steps.filter((s) => !t.steps.some((x) => x.queues >= s) && s !== t.stoppedBefore?.queues);
      if (missing.length) line += `; not reached: ${missing.map((m) => n(m)).join(', ')}`;
      line += t.attaches ? `; ${n(t.attaches.attaches)} attaches at ${n(t.attaches.atQueues ?? t.steps.at(-1)?.queues)} queues.` : '; no attach burst.';
      if (t.error?.startsWith('partial')) line += ' The run was stopped after the last step shown (results are written after every step).';
      else if (t.error) line += ` The run failed: \`${t.error.split('\n')[0]}\`.`;
    }
    lines.push(line);
  }
  return lines.join('\n');
}

/** One row per target and step: idle costs, polls, connections. */
export function scaleIdleTable(r: ScaleSimResults): string {
  const rows = [
    '| target | queues | all served after | server RSS | server CPU at idle | agents RSS (per queue) | agents CPU at idle | polls/s | polls held open | PostgreSQL connections (agents) | load avg |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const t of r.targets) {
    for (const s of t.steps) {
      const open = Object.values(s.pendingPolls).reduce((a, b) => a + b, 0);
      const agentsPg = Object.entries(s.postgres.byApplication).filter(([k]) => k.startsWith('tether-agent')).reduce((a, [, v]) => a + v, 0);
      rows.push(
        `| ${NAMES[t.target] ?? t.target} | ${n(s.queues)} | ${n(r1(s.allServingMs / 1000), ' s')} | ${n(r0(s.server.rssMb), ' MB')} | ${n(s.server.idleCpuPct, ' %')} | ` +
          `${n(r0(s.agents.rssMb), ' MB')} (${n(s.agents.rssKbPerQueue, ' kB')}) | ${n(s.agents.idleCpuPct, ' %')} | ${n(s.pollsPerSecond)} | ${n(open)} | ${n(s.postgres.total)} (${n(agentsPg)}) | ${s.machine.loadAverage1mBefore}→${s.machine.loadAverage1mAfter} |`,
      );
    }
  }
  return `${rows.join('\n')}\n\nCPU in % of one core over the idle window; RSS of every process of the kind together (the server: ${r.targets.map((t) => `${NAMES[t.target] ?? t.target} ${t.steps[0]?.server.processes ?? '—'}`).join(', ')} process(es); the agents: all hosts processes). Polls: the frontends' \`service_requests\` for PollActivityTaskQueue/PollWorkflowTaskQueue in the namespace over the window; held open: \`service_pending_requests\` at its end.`;
}

/** PostgreSQL connections by application at the largest step of each target. */
export function scaleConnectionsTable(r: ScaleSimResults): string {
  const rows = ['| target | queues | application | connections |', '|---|---:|---|---:|'];
  for (const t of r.targets) {
    const s = t.steps.at(-1);
    if (!s) continue;
    for (const [app, c] of Object.entries(s.postgres.byApplication)) rows.push(`| ${NAMES[t.target] ?? t.target} | ${n(s.queues)} | ${app} | ${n(c)} |`);
    rows.push(`| ${NAMES[t.target] ?? t.target} | ${n(s.queues)} | **all** (max_connections ${n(s.postgres.maxConnections)}) | **${n(s.postgres.total)}** |`);
  }
  return rows.join('\n');
}

export function scaleAttachTable(r: ScaleSimResults): string {
  const rows = [
    '| target | queues | attaches (instances, hosts) | all dispatched | all drained | reservation p50 / p99 | completion p50 / p99 | attaches/s | ok / failed | in the database (BDMs, attachments, volumes in-use) | CPU: server / control / agents / API side | load avg |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|',
  ];
  const workflows = new Set<string>();
  for (const t of r.targets) {
    const a = t.attaches;
    if (!a) continue;
    workflows.add(a.workflow);
    rows.push(
      `| ${NAMES[t.target] ?? t.target} | ${n(a.atQueues ?? t.steps.at(-1)?.queues)} | ${n(a.attaches)} (${n(a.instances)}, ${n(a.hosts)}) | ${n(a.dispatchedMs === null ? null : r1(a.dispatchedMs / 1000), ' s')} | ${a.drainedMs === null ? `not within ${n(r0((a.timedOutAfterMs ?? 0) / 1000), ' s')}` : n(r1(a.drainedMs / 1000), ' s')} | ` +
        `${n(a.reservationMs.p50, ' ms')} / ${n(a.reservationMs.p99, ' ms')} | ${n(a.completionMs.p50, ' ms')} / ${n(a.completionMs.p99, ' ms')} | ${n(a.attachesPerSecond)} | ${n(a.succeeded)} / ${n(a.failed)}${a.notConfirmedAnswers ? ` (${n(a.notConfirmedAnswers)} answers 503, asked again)` : ''} | ` +
        `${n(a.database.bdmsAttached)}, ${n(a.database.attachmentsAttached)}, ${n(a.database.volumesInUse)} | ${n(a.serverCpuSec, ' s')} / ${n(a.cpuSec?.control, ' s')} / ${n(a.cpuSec?.agents, ' s')} / ${n(a.cpuSec?.driver, ' s')} | ${a.loadAverage1m.before}→${a.loadAverage1m.after} |`,
    );
  }
  if (rows.length === 2) return '_No attach burst in this run._';
  const ownRuns = r.targets.flatMap((t) => (t.attaches?.run ? [`${NAMES[t.target] ?? t.target}: \`${t.attaches.run.command}\` at commit \`${t.attaches.run.commit}\`, ${t.attaches.run.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')}`] : []));
  const measuredBy = ownRuns.length ? `\n\nThe burst measured by a run of its own — ${ownRuns.join('; ')}.` : '';
  return `${rows.join('\n')}${measuredBy}\n\nWorkflow: ${[...workflows].join('; ')}. All requested at once; "dispatched" = the last reservation answered (what the API's POST waits for), "drained" = the last saga finished.`;
}

/** The measured step the extrapolation starts from: the cluster's largest, else the dev server's. */
function basis(r: ScaleSimResults): { t: ScaleTargetResult; s: ScaleStep; first: ScaleStep } | undefined {
  for (const kind of ['cluster', 'dev']) {
    const t = r.targets.find((x) => x.target === kind && x.steps.length > 0);
    if (t) return { t, s: t.steps.at(-1)!, first: t.steps[0]! };
  }
  return undefined;
}

/** Linear extrapolation of the measured per-queue and per-host costs to 100 000 queues on 1000 hosts. */
export function scaleExtrapolation(r: ScaleSimResults, target = { queues: 100_000, hosts: 1000 }): string {
  const b = basis(r);
  if (!b) return '_Nothing measured yet._';
  const { t, s, first } = b;
  const k = target.queues / s.queues;
  const perHost = target.queues / target.hosts;
  // the server's growth per queue: the slope between the first and the largest step when there are two
  const slope = s.queues > first.queues ? (s.server.rssMb - first.server.rssMb) / (s.queues - first.queues) : s.server.rssMb / s.queues;
  const serverRss = s.server.rssMb + slope * (target.queues - s.queues);
  const agentsPg = Object.entries(s.postgres.byApplication).filter(([key]) => key.startsWith('tether-agent')).reduce((a, [, v]) => a + v, 0);
  const pgPerHost = agentsPg / s.hosts;
  const open = Object.values(s.pendingPolls).reduce((a, c) => a + c, 0);
  const frontends = t.frontends ?? 1;
  const rows = [
    `| quantity | measured (${NAMES[t.target] ?? t.target}, ${n(s.queues)} queues on ${n(s.hosts)} hosts) | per unit | at ${n(target.queues)} queues on ${n(target.hosts)} hosts (linear) |`,
    '|---|---:|---:|---:|',
    `| long polls held open by the frontends | ${n(open)} | ${n(r1(open / s.queues))} per queue | ${n(r0((open / s.queues) * target.queues))} (${n(r0(((open / s.queues) * target.queues) / frontends))} per frontend with ${frontends}) |`,
    `| poll RPCs per second at idle | ${n(s.pollsPerSecond)} | ${s.pollsPerSecond === null ? '—' : n(Math.round((s.pollsPerSecond / s.queues) * 10000) / 10000)} per queue | ${s.pollsPerSecond === null ? '—' : n(r0(s.pollsPerSecond * k))} |`,
    `| Temporal server RSS | ${n(r0(s.server.rssMb), ' MB')} | ${n(r1(slope * 1024), ' kB')} per added queue${s.queues > first.queues ? ` (${n(first.queues)}→${n(s.queues)})` : ''} | ${n(r0(serverRss / 1024 * 10) / 10, ' GB')} |`,
    `| Temporal server CPU at idle | ${n(s.server.idleCpuPct, ' %')} of a core | ${n(Math.round((s.server.idleCpuPct / s.queues) * 1e4) / 1e4, ' %')} per queue | ${n(r1((s.server.idleCpuPct * k) / 100))} cores |`,
    `| compute agent RSS | ${n(r0(s.agents.rssMb), ' MB')} (all hosts) | ${n(s.agents.rssKbPerQueue, ' kB')} per queue | ${n(r0((s.agents.rssKbPerQueue * perHost) / 1024), ' MB')} per agent of ${n(perHost)} instances |`,
    `| compute agent CPU at idle | ${n(s.agents.idleCpuPct, ' %')} of a core (all hosts) | ${n(Math.round((s.agents.idleCpuPct / s.queues) * 1e4) / 1e4, ' %')} per queue | ${n(Math.round(((s.agents.idleCpuPct / s.queues) * perHost) * 100) / 100, ' %')} of a core per agent |`,
    `| PostgreSQL connections of the agents | ${n(agentsPg)} | ${n(r1(pgPerHost))} per host | ${n(r0(pgPerHost * target.hosts))} |`,
  ];
  return `${rows.join('\n')}\n\nLinear in the measured per-unit cost; the server's RSS grows by the slope between the smallest and the largest step measured.`;
}
