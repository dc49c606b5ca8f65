/**
 * `npm run docs`: every figure of README.md and docs/ that comes from a run, rendered from the run's
 * committed JSON — no number of a measurement is typed by hand.
 *
 *   npm run docs                        rewrite the generated parts
 *   npm run docs -- --check             change nothing; exit 1 naming the files that differ
 *   npm run docs -- --record-test-run   first copy .data/test-run.json (left by the last `npm test` of
 *                                       the whole suite) to docs/test-run.json
 *
 * Generated parts: the regions between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->` in
 * README.md and docs/**\/*.md (NAME one of REGIONS below), and whole files: docs/bench/results.md and
 * the charts docs/bench/*.svg. Their sources:
 *   docs/bench/latest.json            `npm run bench`
 *   docs/chaos/results/<name>.json    `npm run chaos` (full), `-- --short` (short), `-- --only/--sample` (targeted)
 *   docs/test-run.json                `npm test`, then `npm run docs -- --record-test-run`
 *   docs/nova/differential.json       `npm run nova:diff` (the differential test against a real Nova)
 *   docs/nova/kills.json              `npm run nova:kills` (the same kill at the same step in Nova and tether)
 *   docs/scale.json                   `npm run scale` (the scale simulation: simulated hosts × instance queues)
 * test/docs.test.ts fails when the committed markdown differs from what this renders.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { changesTable, cyclesSection, neighboursSection, overheadFindings, overheadSection, resourcesSection, runLine, scaleSection, summaryTable, timeSection } from '../bench/docs.ts';
import { markdown, novaTable, renderCharts, type BenchResults } from '../bench/report.ts';
import { cliTable } from '../bench/cli.ts';
import { targetsTable } from '../bench/targets.ts';
import { clusterTable } from '../bench/cluster-report.ts';
import { markdownReport, type RunSummary } from '../chaos/report.ts';
import type { TestRunRecord } from '../test/support/summary-reporter.ts';
import { killTable, type KillResults } from '../chaos/nova-kills-report.ts';
import { driftKindTable, driftMarkdown } from '../chaos/drift-report.ts';
import { differentialMarkdown, type DifferentialResults } from '../test/support/differential-report.ts';
import { scaleAttachTable, scaleConnectionsTable, scaleExtrapolation, scaleIdleTable, scaleRunLine, type ScaleSimResults } from '../bench/scale-sim-report.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const BENCH_JSON = 'docs/bench/latest.json';
const CHAOS_DIR = 'docs/chaos/results';
const TEST_RUN_JSON = 'docs/test-run.json';
const NOVA_DIFF_JSON = 'docs/nova/differential.json';
const NOVA_KILLS_JSON = 'docs/nova/kills.json';
const SCALE_JSON = 'docs/scale.json';

function readJson<T>(root: string, file: string): T | undefined {
  const full = path.join(root, file);
  return fs.existsSync(full) ? (JSON.parse(fs.readFileSync(full, 'utf8')) as T) : undefined;
}

const missing = (command: string, file: string) => `_Not in the repository yet: \`${command}\` writes \`${file}\`, then \`npm run docs\` renders it here._`;

type Render = (root: string) => string;

function scale(render: (r: ScaleSimResults) => string): Render {
  return (root) => {
    const r = readJson<ScaleSimResults>(root, SCALE_JSON);
    return r ? render(r) : missing('npm run scale', SCALE_JSON);
  };
}

function bench(render: (r: BenchResults, root: string) => string): Render {
  return (root) => {
    const r = readJson<BenchResults>(root, BENCH_JSON);
    return r ? render(r, root) : missing('npm run bench', BENCH_JSON);
  };
}

function chaos(name: string, command: string, o: { notes?: boolean; bySteps?: boolean } = {}): Render {
  return (root) => {
    const file = `${CHAOS_DIR}/${name}.json`;
    const s = readJson<RunSummary>(root, file);
    return s ? `${markdownReport(s, o)}\n\nFrom [\`${file}\`](${path.relative('docs', file)}).` : missing(command, file);
  };
}

/** The chaos families (npm run chaos -- --<family>): region chaos-<family> from docs/chaos/results/<family>.json. */
const CHAOS_FAMILIES: Record<string, { command: string; notes?: boolean; bySteps?: boolean }> = {
  compensation: { command: 'npm run chaos -- --compensation', bySteps: true },
  lifecycle: { command: 'npm run chaos -- --lifecycle', bySteps: true },
  fuzz: { command: 'npm run chaos -- --fuzz', notes: true },
  concurrent: { command: 'npm run chaos -- --concurrent', notes: true },
  long: { command: 'npm run chaos -- --long', bySteps: true },
  guest: { command: 'npm run chaos -- --guest', bySteps: true, notes: true },
  partitions: { command: 'npm run chaos -- --partitions', notes: true },
  clock: { command: 'npm run chaos -- --clock', notes: true },
  'temporal-nodes': { command: 'npm run chaos -- --temporal-nodes', bySteps: true, notes: true },
  'host-processes': { command: 'npm run chaos -- --host-processes', notes: true },
  'disk-full': { command: 'npm run chaos -- --disk-full', notes: true },
};

function testRun(root: string): string {
  const t = readJson<TestRunRecord>(root, TEST_RUN_JSON);
  if (!t) return missing('npm test', TEST_RUN_JSON);
  const minutes = Math.round(t.durationS / 6) / 10;
  return (
    `The last recorded run of the whole suite (\`${t.command}\` at commit \`${t.commit}\`, ${t.date.slice(0, 10)}): ` +
    `**${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped in ${minutes} min** (vitest, ${t.files} files) on ${t.machine.cpus} cores, ` +
    `load average ${t.machine.loadStart} at the start and ${t.machine.loadEnd} at the end (other work shares this machine; on a quiet one it is faster). ` +
    `From [\`${TEST_RUN_JSON}\`](${TEST_RUN_JSON}), recorded with \`npm run docs -- --record-test-run\`.`
  );
}

/** Nova beside tether (bench/nova.ts): the table, from the full run or the part's own run (`--only=nova`). */
function novaRegion(r: BenchResults): string {
  const part = r.nova;
  if (!part) return '_Not measured yet: `npm run bench` (or `npm run bench -- --only=nova`) adds it._';
  if (part.skipped) return `_Skipped in the last run: ${part.skipped}_`;
  const run = part.run;
  const when = run
    ? `\`${run.command}\` at commit \`${run.commit}\`, ${run.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')}, load average ${run.loadStart} at the start and ${run.loadEnd} at the end (2 cores)`
    : runLine(r);
  return `${when}: Nova ${part.nova} (Debian's packages) and tether, ${part.instances} servers each, on one Cinder (loop devices) and one libvirt, in alternating rounds, both driven over HTTP the same way.\n\n${novaTable(part)}`;
}

function clusterRegion(r: BenchResults): string {
  const part = r.cluster;
  if (!part) return '_Not measured yet: `npm run bench` (or `npm run bench -- --only=cluster`) adds it._';
  const run = part.run;
  const when = run
    ? `\`${run.command}\` at commit \`${run.commit}\`, ${run.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')}, load average ${run.loadStart} at the start and ${run.loadEnd} at the end (2 cores)`
    : runLine(r);
  return `${when}: ${part.topology}; the same attach+detach cycles on the dev server and on the cluster, in ${part.rounds} alternating rounds (cluster stack up in ${Math.round(part.startMs / 100) / 10} s).\n\n${clusterTable(part)}`;
}

/** Every region a markdown file may hold. */
export const REGIONS: Record<string, Render> = {
  'test-run': testRun,
  'bench-summary': bench((r) => `${runLine(r)} p50, 1 client unless said:\n\n${summaryTable(r)}`),
  'bench-findings': bench(overheadFindings),
  'bench-changes': bench(changesTable),
  'bench-run': bench((r) => `${runLine(r)} Every table of the run is in [\`results.md\`](results.md); the JSON in [\`latest.json\`](latest.json).`),
  'bench-overhead': bench(overheadSection),
  'bench-cycles': bench(cyclesSection),
  'bench-time': bench(timeSection),
  'bench-scale': bench(scaleSection),
  'bench-neighbours': bench(neighboursSection),
  'bench-resources': bench(resourcesSection),
  'bench-targets': bench((r, root) => `${runLine(r)}${r.cli ? ` The CLI's rows: its own run of ${r.cli.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')}.` : ''}\n\n${targetsTable(r, readJson<ScaleSimResults>(root, SCALE_JSON) ?? undefined)}`),
  'bench-nova': bench(novaRegion),
  'bench-cluster': bench(clusterRegion),
  'bench-cli': bench((r) => (r.cli ? cliTable(r.cli) : '_Not measured in this run: `npm run bench -- --only=cli` adds it._')),
  'chaos-short': chaos('short', 'npm run chaos -- --short --no-libvirtd --seed 1'),
  'chaos-targeted': chaos('targeted', "npm run chaos -- --only '…'"),
  'chaos-full': chaos('full', 'npm run chaos'),
  ...Object.fromEntries(Object.entries(CHAOS_FAMILIES).map(([name, f]) => [`chaos-${name}`, chaos(name, f.command, f)])),
  'chaos-drift': (root) => {
    const file = `${CHAOS_DIR}/drift.json`;
    const r = readJson<RunSummary>(root, file);
    return r ? driftMarkdown(r, file) : missing('npm run chaos -- --drift', file);
  },
  'drift-repair': (root) => {
    const file = `${CHAOS_DIR}/drift.json`;
    const r = readJson<RunSummary>(root, file);
    return r ? `${markdownReport(r).split('\n')[0]}\n\n${driftKindTable(r)}\n\nThe kills during repairs and swaps: [chaos.md](chaos.md#drift). From [\`${file}\`](${path.relative('docs', file)}).` : missing('npm run chaos -- --drift', file);
  },
  'scale-sim-run': scale((r) => `${scaleRunLine(r)}\n\nFrom [\`scale.json\`](scale.json).`),
  'scale-sim-idle': scale(scaleIdleTable),
  'scale-sim-connections': scale(scaleConnectionsTable),
  'scale-sim-attaches': scale(scaleAttachTable),
  'scale-sim-extrapolation': scale((r) => scaleExtrapolation(r)),
  'nova-diff': (root) => {
    const r = readJson<DifferentialResults>(root, NOVA_DIFF_JSON);
    return r ? `${differentialMarkdown(r)}\n\nFrom [\`${NOVA_DIFF_JSON}\`](${path.relative('docs', NOVA_DIFF_JSON)}).` : missing('npm run nova:diff', NOVA_DIFF_JSON);
  },
  'nova-kills': (root) => {
    const r = readJson<KillResults>(root, NOVA_KILLS_JSON);
    return r ? `${killTable(r)}\n\nFrom [\`${NOVA_KILLS_JSON}\`](${path.relative('docs', NOVA_KILLS_JSON)}).` : missing('npm run nova:kills', NOVA_KILLS_JSON);
  },
};

const REGION = /<!-- generated:([\w-]+) -->\n([\s\S]*?)<!-- \/generated:\1 -->/g;

function markdownFiles(root: string): string[] {
  const files = ['README.md'];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.md')) files.push(rel);
    }
  };
  walk('docs');
  return files;
}

/** File (relative to root) → the content it must have. */
export function renderDocs(root = ROOT): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of markdownFiles(root)) {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    const opened = [...text.matchAll(/<!-- generated:([\w-]+) -->/g)].map((m) => m[1]!);
    const closed = [...text.matchAll(REGION)].map((m) => m[1]!);
    const unclosed = opened.filter((n) => !closed.includes(n));
    if (unclosed.length) throw new Error(`${file}: <!-- generated:${unclosed[0]} --> has no <!-- /generated:${unclosed[0]} -->`);
    const rendered = text.replace(REGION, (_all, name: string) => {
      const render = REGIONS[name];
      if (!render) throw new Error(`${file}: unknown generated region ${name} (known: ${Object.keys(REGIONS).join(', ')})`);
      return `<!-- generated:${name} -->\n${render(root).trimEnd()}\n<!-- /generated:${name} -->`;
    });
    if (opened.length) out.set(file, rendered);
  }
  const r = readJson<BenchResults>(root, BENCH_JSON);
  if (r) {
    out.set('docs/bench/results.md', markdown(r));
    for (const [name, svg] of Object.entries(renderCharts(r))) out.set(`docs/bench/${name}`, svg);
  }
  return out;
}

/** Writes what renderDocs renders; returns the files it changed (or, with check, would change). */
export function writeDocs(root = ROOT, o: { check?: boolean } = {}): string[] {
  const differ: string[] = [];
  for (const [file, content] of renderDocs(root)) {
    const full = path.join(root, file);
    const now = fs.existsSync(full) ? fs.readFileSync(full, 'utf8') : undefined;
    if (now === content) continue;
    differ.push(file);
    if (!o.check) fs.writeFileSync(full, content);
  }
  return differ;
}

function main(argv: string[]): void {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a !== '--check' && a !== '--record-test-run');
  if (unknown.length) {
    process.stderr.write(`error: unknown argument ${unknown[0]}\nusage: npm run docs [-- --check | --record-test-run]\n`);
    process.exit(2);
  }
  if (argv.includes('--record-test-run')) {
    const from = path.join(ROOT, '.data', 'test-run.json');
    if (!fs.existsSync(from)) {
      process.stderr.write('error: no .data/test-run.json: run the whole suite first (npm test)\n');
      process.exit(1);
    }
    fs.copyFileSync(from, path.join(ROOT, TEST_RUN_JSON));
    process.stdout.write(`recorded ${TEST_RUN_JSON}\n`);
  }
  const differ = writeDocs(ROOT, { check });
  if (check) {
    if (differ.length) {
      process.stderr.write(`not as rendered from the committed JSON (run npm run docs): ${differ.join(', ')}\n`);
      process.exit(1);
    }
    process.stdout.write('docs: every generated part matches the committed JSON\n');
  } else {
    process.stdout.write(differ.length ? `docs: rewrote ${differ.join(', ')}\n` : 'docs: nothing to change\n');
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) main(process.argv.slice(2));
