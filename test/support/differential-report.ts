/**
 * The differential test's record (docs/nova/differential.json, written when TETHER_NOVA_DIFF_OUT names
 * it: `npm run nova:diff`) and the table `npm run docs` renders from it into docs/nova.md (region
 * nova-diff). As a command (the last step of `npm run nova:diff`): checks the record, then renders the docs.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Difference, Observation, Side } from './differential.ts';
import type { NovaHandle } from './nova.ts';
import { ALLOWED_DIFFERENCES } from './differential-scenarios.ts';

export interface ScenarioRecord {
  group: string;
  scenario: string;
  nova: Observation[];
  tether: Observation[];
  explained: Array<Difference & { reason: string }>;
  unexplained: Difference[];
}

export interface DifferentialResults {
  meta: {
    date: string;
    commit: string;
    nova: string;
    novaMaxMicroversion: string;
    tetherMaxMicroversion: string;
    novaStart: NovaHandle['timings'];
    novaRssMiB: Record<string, number>;
    /** What Nova asked the Neutron stand-in, query strings cut (each distinct call once). */
    neutronCalls: string[];
  };
  scenarios: Array<{ group: string; scenario: string; answers: Array<{ label: string; nova: string; tether: string }>; allowed: Array<{ path: string; nova: string; tether: string; reason: string }>; unexplained: string[] }>;
}

const answer = (o: Observation) => `${o.status}${o.error ? ` ${o.error.split('/')[0]}` : ''}`;

export function writeDifferentialResults(file: string, o: { nova: NovaHandle; records: ScenarioRecord[]; sides: Record<'nova' | 'tether', Side> }): void {
  const version = (pkg: string) => execFileSync('dpkg-query', ['-W', '-f=${Version}', pkg]).toString();
  const results: DifferentialResults = {
    meta: {
      date: new Date().toISOString(),
      commit: execFileSync('git', ['rev-parse', '--short', 'HEAD']).toString().trim(),
      nova: version('nova-common'),
      novaMaxMicroversion: o.sides.nova.maxMicroversion,
      tetherMaxMicroversion: o.sides.tether.maxMicroversion,
      novaStart: o.nova.timings,
      novaRssMiB: o.nova.rssMiB(),
      neutronCalls: [...new Set(o.nova.neutronCalls.map((c) => c.replace(/\?.*/, '?…')))],
    },
    scenarios: o.records.map((r) => ({
      group: r.group,
      scenario: r.scenario,
      answers: r.nova.map((n) => ({ label: n.label, nova: answer(n), tether: r.tether.find((t) => t.label === n.label) ? answer(r.tether.find((t) => t.label === n.label)!) : '(none)' })),
      allowed: r.explained.map((d) => ({ path: `${d.label} / ${d.path}`, nova: d.nova, tether: d.tether, reason: d.reason })),
      unexplained: r.unexplained.map((d) => `${d.label} / ${d.path}: nova ${d.nova}, tether ${d.tether}`),
    })),
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(results, null, 1)}\n`);
}

/** Each answer "label: Nova = tether"; labels that differ only by microversion folded ("GET list 2.1 … 2.89: 200 = 200 (89×)"). */
function foldAnswers(answers: DifferentialResults['scenarios'][number]['answers']): string {
  const parts: string[] = [];
  const folded = new Map<string, Array<{ version: string; pair: string }>>();
  for (const x of answers) {
    const pair = x.nova === x.tether ? `${x.nova} = ${x.tether}` : `Nova ${x.nova}, tether ${x.tether}`;
    const m = /^(.*) (2\.\d+)$/.exec(x.label);
    if (!m) {
      parts.push(`${x.label}: ${pair}`);
      continue;
    }
    if (!folded.has(m[1]!)) {
      folded.set(m[1]!, []);
      parts.push(m[1]!); // placeholder, replaced below
    }
    folded.get(m[1]!)!.push({ version: m[2]!, pair });
  }
  return parts
    .map((p) => {
      const runs = folded.get(p);
      if (!runs) return p;
      if (runs.length === 1) return `${p} ${runs[0]!.version}: ${runs[0]!.pair}`;
      return `${p} ${runs[0]!.version} … ${runs.at(-1)!.version}: ${[...new Set(runs.map((r) => r.pair))].join(', ')} (${runs.length}×)`;
    })
    .join('; ');
}

export function differentialMarkdown(r: DifferentialResults): string {
  const m = r.meta;
  const lines = [
    `Run ${m.date.slice(0, 10)} at ${m.commit}: Nova ${m.nova} (microversions up to ${m.novaMaxMicroversion}) against tether (up to ${m.tetherMaxMicroversion}); ` +
      `Nova started in ${Math.round(m.novaStart.totalMs / 1000)} s (schemas ${Math.round(m.novaStart.schemaMs / 1000)} s${m.novaStart.schemaFromCache ? ' from the cached dumps' : ' by db sync'}), ` +
      `resident ${Object.entries(m.novaRssMiB).map(([k, v]) => `${k} ${v}`).join(', ')} MiB; it asked the Neutron stand-in ${m.neutronCalls.map((c) => `\`${c}\``).join(', ')}.`,
    '',
    '| scenario | answers (Nova = tether) | allowed differences |',
    '|---|---|---|',
  ];
  for (const s of r.scenarios) {
    const allowed = s.allowed.map((a) => `${a.path}: Nova ${a.nova}, tether ${a.tether}`).join('; ');
    const wrong = s.unexplained.length ? ` **unexplained: ${s.unexplained.join('; ')}**` : '';
    lines.push(`| ${s.group}: ${s.scenario} | ${foldAnswers(s.answers)} | ${allowed || '—'}${wrong} |`);
  }
  const total = r.scenarios.reduce((n, s) => n + s.answers.length, 0);
  const unexplained = r.scenarios.reduce((n, s) => n + s.unexplained.length, 0);
  lines.push('');
  lines.push(`${r.scenarios.length} scenarios, ${total} requests on each side; ${unexplained} unexplained difference${unexplained === 1 ? '' : 's'}.`);
  lines.push('');
  lines.push('The allow-list (test/support/differential-scenarios.ts), each entry with its reason:');
  lines.push('');
  for (const a of ALLOWED_DIFFERENCES) lines.push(`- ${String(a.scenario)}, ${String(a.path)}: ${a.reason}.`);
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const file = process.argv[2] ?? 'docs/nova/differential.json';
  if (!fs.existsSync(file)) {
    console.error(`${file} does not exist: the differential test writes it when TETHER_NOVA_DIFF_OUT names it (npm run nova:diff); did the test run, or was it skipped?`);
    process.exit(1);
  }
  const results = JSON.parse(fs.readFileSync(file, 'utf8')) as DifferentialResults;
  const unexplained = results.scenarios.flatMap((s) => s.unexplained);
  const { writeDocs } = await import('../../scripts/generate-docs.ts');
  console.log(`${file}: ${results.scenarios.length} scenarios, ${unexplained.length} unexplained differences; npm run docs rewrote ${writeDocs().join(', ') || 'nothing'}`);
  if (unexplained.length > 0) process.exit(1);
}
