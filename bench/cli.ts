/**
 * The CLI's start-up: what an operator waits for on every command. `node -e 0` (the floor of any
 * Node program), `tether --help` and `tether server list --help` — the compiled CLI as bin/tether.js
 * runs it, and the same commands from the TypeScript source through tsx (TETHER_CLI_SOURCE=1, what
 * bin/tether.js ran before the build) — in interleaved rounds, so that every command sees the same
 * machine load. Wall time from spawn to exit, without instrumentation; the peak RSS (maxRSS at exit)
 * from a second run of each with a tiny --import hook that writes it to fd 3. No stack needed:
 * `npm run bench -- --only=cli`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../src/config.ts';
import { ratio, roundTo, rounded, summarize, type Summary } from './stats.ts';

export interface CliCommandResult {
  label: string;
  argv: string[];
  wallMs: Summary;
  rssMb: Summary;
}

export interface CliResult {
  date: string;
  commit?: string;
  rounds: number;
  loadStart: number;
  commands: CliCommandResult[];
  /** p50 wall of each tether command over node -e 0's, same run */
  wallRatio: Record<string, number>;
  /** the issue's target: within this many times node -e 0, under this many MB */
  target: { wallRatio: number; rssMb: number };
}

const TETHER = path.join(projectRoot, 'bin', 'tether.js');

/** Writes the process's peak RSS (kB) to fd 3 when it exits. */
const RSS_HOOK = `data:text/javascript,${encodeURIComponent(
  "import fs from 'node:fs'; process.on('exit', () => { try { fs.writeSync(3, String(process.resourceUsage().maxRSS)); } catch {} });",
)}`;

interface Spec {
  label: string;
  args: string[];
  env?: Record<string, string>;
}

export const CLI_COMMANDS: Spec[] = [
  { label: 'node -e 0', args: ['-e', '0'] },
  { label: 'tether --help', args: [TETHER, '--help'] },
  { label: 'tether server list --help', args: [TETHER, 'server', 'list', '--help'] },
  { label: 'tether --help (TypeScript source through tsx)', args: [TETHER, '--help'], env: { TETHER_CLI_SOURCE: '1' } },
  { label: 'tether server list --help (TypeScript source through tsx)', args: [TETHER, 'server', 'list', '--help'], env: { TETHER_CLI_SOURCE: '1' } },
];

function run(spec: Spec, rss: boolean): Promise<{ wallMs: number; rssKb?: number }> {
  return new Promise((resolve, reject) => {
    const args = rss ? ['--import', RSS_HOOK, ...spec.args] : spec.args;
    const t0 = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: projectRoot,
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'ignore', 'pipe', ...(rss ? (['pipe'] as const) : [])],
    });
    let err = '';
    let fd3 = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    if (rss) (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (fd3 += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = performance.now() - t0;
      if (code !== 0) return reject(new Error(`${spec.label} exited ${code}: ${err.trim()}`));
      resolve(rss ? { wallMs, rssKb: Number(fd3) } : { wallMs });
    });
  });
}

export async function runCliPart(opts: { rounds: number; log?: (s: string) => void }): Promise<CliResult> {
  const loadStart = roundTo((await import('node:os')).loadavg()[0]!, 1);
  // Warm-up: builds the CLI if it is stale (bin/tether.js does), fills tsx's transform cache and the page cache.
  for (const spec of CLI_COMMANDS) await run(spec, false);
  const wall = new Map<string, number[]>(CLI_COMMANDS.map((s) => [s.label, []]));
  const rss = new Map<string, number[]>(CLI_COMMANDS.map((s) => [s.label, []]));
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? CLI_COMMANDS : [...CLI_COMMANDS].reverse();
    for (const spec of order) {
      wall.get(spec.label)!.push((await run(spec, false)).wallMs);
      rss.get(spec.label)!.push((await run(spec, true)).rssKb! / 1024);
    }
  }
  const commands = CLI_COMMANDS.map((s) => ({
    label: s.label,
    argv: [path.basename(process.execPath), ...s.args.map((a) => (a === TETHER ? 'bin/tether.js' : a))],
    ...(s.env ? { env: s.env } : {}),
    wallMs: rounded(summarize(wall.get(s.label)!)),
    rssMb: rounded(summarize(rss.get(s.label)!)),
  }));
  const floor = commands[0]!.wallMs.p50;
  const wallRatio = Object.fromEntries(commands.slice(1).map((c) => [c.label, ratio(c.wallMs.p50, floor)]));
  const result: CliResult = {
    date: new Date().toISOString(),
    rounds: opts.rounds,
    loadStart,
    commands,
    wallRatio,
    target: { wallRatio: 5, rssMb: 60 },
  };
  for (const line of cliLines(result)) opts.log?.(line);
  return result;
}

/** Terminal lines: each command's p50 wall, its ratio to node -e 0 and its peak RSS. */
export function cliLines(r: CliResult): string[] {
  return r.commands.map((c, i) => {
    const ratioText = i === 0 ? '' : `, ${r.wallRatio[c.label]}× node -e 0`;
    return `cli: ${c.label.padEnd(58)} wall p50 ${c.wallMs.p50} ms (max ${c.wallMs.max})${ratioText}, RSS max ${c.rssMb.max} MB`;
  });
}

/** The markdown table of docs/bench/results.md. */
export function cliTable(r: CliResult): string {
  const lines = [
    `${r.rounds} interleaved rounds, ${r.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC')}${r.commit ? ` at commit \`${r.commit}\`` : ''}, load ${r.loadStart} at the start. Target: within ${r.target.wallRatio}× \`node -e 0\` (wall p50) and under ${r.target.rssMb} MB.`,
    '',
    '| command | wall p50 / p95 / max (ms) | × node -e 0 (p50) | peak RSS p50 / max (MB) | target |',
    '|---|---:|---:|---:|---|',
  ];
  for (const [i, c] of r.commands.entries()) {
    const x = i === 0 ? undefined : r.wallRatio[c.label];
    const compiled = i > 0 && !c.label.includes('source');
    const met = x === undefined || !compiled ? '' : x <= r.target.wallRatio && c.rssMb.max < r.target.rssMb ? 'met' : 'not met';
    lines.push(`| \`${c.label}\` | ${c.wallMs.p50} / ${c.wallMs.p95} / ${c.wallMs.max} | ${x === undefined ? '1' : `${x}×`} | ${c.rssMb.p50} / ${c.rssMb.max} | ${met} |`);
  }
  return lines.join('\n');
}

// `node --import tsx bench/cli.ts [rounds]`: the CLI part alone, printed, nothing written.
if (process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(new URL(import.meta.url).pathname)) {
  await runCliPart({ rounds: Number(process.argv[2] ?? 10), log: (s) => process.stdout.write(`${s}\n`) });
}
