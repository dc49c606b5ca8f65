/**
 * The kill comparison's results (docs/nova/kills.json, written by `npm run nova:kills`, chaos/nova-kills.ts)
 * and the table `npm run docs` renders from them into docs/nova.md (region nova-kills).
 */
import type { PairState } from './harness.ts';

export type Op = 'attach' | 'detach';
export type SystemName = 'nova' | 'tether';

export interface KillPoint {
  op: Op;
  /** tether's step name (also the name of Nova's pause point at the function that does the step). */
  step: string;
  phase: 'before' | 'after';
  /** In words, and where it is in Nova. */
  what: string;
}

export interface KillOutcome {
  system: SystemName;
  point: string;
  /** The point was reached and the process killed while it stood there. */
  triggered: boolean;
  killed: string | null;
  /** The API's answer to the request that was under way. */
  answer: string;
  /** attached / absent / in-between: … (chaos/harness.ts classify). */
  state: string;
  stores: PairState;
  /** The invariant checker's findings on the system's host after it settled (kinds and details). */
  findings: string[];
  /** From the kill until the system settled. */
  settleMs: number;
  /** Detach / attach / detach through the API afterwards, without an operator. */
  afterwards: { usable: boolean; steps: string[] };
  notes: string[];
}

export interface KillResults {
  meta: { date: string; commit: string; nova: string; cinder: string; libvirt: string; rpcResponseTimeoutS: number; settleQuietS: number };
  points: Array<KillPoint & { name: string }>;
  outcomes: KillOutcome[];
}

function cell(o: KillOutcome | undefined): string {
  if (!o) return '—';
  if (!o.triggered) return `not reached (${o.answer})`;
  const findings = o.findings.length === 0 ? 'checker: clean' : `checker: ${[...new Set(o.findings.map((f) => f.split(':')[0]))].join(', ')}`;
  // the step that failed, as "detach: 400 badRequest" (the whole answer is in the JSON)
  const failed = o.afterwards.steps.at(-1)?.match(/^(\w+): (\d+)(?: \{"(\w+)")?/);
  const usable = o.afterwards.usable ? 'usable afterwards' : `**not usable afterwards**${failed ? ` (${failed[1]} answered ${failed[2]}${failed[3] ? ` ${failed[3]}` : ''})` : ''}`;
  return `${o.state === 'attached' || o.state === 'absent' ? o.state : `**${o.state}**`}; API ${o.answer.split(' ')[0]}; ${findings}; ${usable}`;
}

export function killTable(results: KillResults): string {
  const lines = [
    `Run ${results.meta.date.slice(0, 10)} at ${results.meta.commit}: Nova ${results.meta.nova}, Cinder ${results.meta.cinder} (loop devices), ${results.meta.libvirt}; Nova settled = the API answered and the stores stood still ${results.meta.settleQuietS} s (rpc_response_timeout ${results.meta.rpcResponseTimeoutS} s).`,
    '',
    '| point | killed (Nova / tether) | Nova leaves | tether leaves |',
    '|---|---|---|---|',
  ];
  for (const p of results.points) {
    const n = results.outcomes.find((o) => o.system === 'nova' && o.point === p.name);
    const t = results.outcomes.find((o) => o.system === 'tether' && o.point === p.name);
    lines.push(`| ${p.op} — ${p.what} | ${n?.killed ?? '—'} / ${t?.killed ?? '—'} | ${cell(n)} | ${cell(t)} |`);
  }
  const count = (system: SystemName, f: (o: KillOutcome) => boolean) => results.outcomes.filter((o) => o.system === system && o.triggered && f(o)).length;
  const total = (system: SystemName) => results.outcomes.filter((o) => o.system === system && o.triggered).length;
  lines.push('');
  for (const system of ['nova', 'tether'] as const) {
    lines.push(
      `- ${system === 'nova' ? 'Nova' : 'tether'}: ${count(system, (o) => o.state === 'attached' || o.state === 'absent')} of ${total(system)} kills left the pair consistent, ` +
        `${count(system, (o) => o.findings.length === 0)} with a clean checker, ${count(system, (o) => o.afterwards.usable)} usable afterwards without an operator.`,
    );
  }
  return lines.join('\n');
}

