/**
 * What `tether repair [--dry-run] [SERVER [VOLUME]]` and `tether check --repair` run (imported when
 * the command runs; cli/repair-command.ts registers them): the
 * checker's disagreements (in-flight findings are never repaired) mapped to repair sagas
 * (src/repair/policy.ts), started on the control task queue in line with each pair's attaches and
 * detaches, each printed as it starts and ends; then the check again. `--dry-run` prints what each
 * saga would do, read from the stores now, and changes nothing.
 */
import type { Client } from '@temporalio/client';
import { formatDisagreements, inspectInvariants, type Disagreement, type InvariantReport } from '../src/checker/invariants.ts';
import type { ConfiguredBlockStorage } from '../src/blockstorage/index.ts';
import type { Database } from '../src/db/database.ts';
import { LibvirtConnection } from '../src/libvirt/binding.ts';
import { describeTarget, planRepairs, runRepairs, selectRepairs, type RepairRun } from '../src/repair/repairs.ts';
import { TetherError } from '../src/errors.ts';
import type { CliContext } from './context.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface RepairCliDeps {
  db: Database;
  client: Client;
  blockStorage: ConfiguredBlockStorage;
  libvirt: LibvirtConnection;
  taskQueue: string;
  host: string | undefined;
  /** Where leaked secrets are removed: the host whose libvirt was read. */
  secretsHost: string;
}

export interface RepairOutput {
  dryRun: boolean;
  planned: Array<{ target: string; findings: string[]; actions: string[]; notes: string[] }>;
  reportOnly: Array<{ kind: string; instanceUuid?: string; volumeId?: string; reason: string }>;
  runs: Array<{ target: string; workflowId: string; outcome?: string; actions?: string[]; notes?: string[]; error?: string }>;
  remaining: Disagreement[];
}

export function inspect(deps: RepairCliDeps): Promise<InvariantReport> {
  return inspectInvariants({
    db: deps.db,
    blockStorage: deps.blockStorage,
    libvirt: deps.libvirt,
    client: deps.client,
    controlTaskQueue: deps.taskQueue,
    ...(deps.host === undefined ? {} : { host: deps.host }),
  });
}

/** Repairs the findings (or plans, with dryRun); `say` prints progress lines (to stderr under --json). */
export async function repairFindings(
  deps: RepairCliDeps,
  findings: Disagreement[],
  options: { dryRun: boolean; filter: (d: Disagreement) => boolean; say: (line: string) => void },
): Promise<RepairOutput> {
  const selection = selectRepairs(findings, { host: deps.secretsHost });
  const out: RepairOutput = {
    dryRun: options.dryRun,
    planned: [],
    reportOnly: selection.reportOnly.map((r) => ({ kind: r.finding.kind, ...(r.finding.instanceUuid ? { instanceUuid: r.finding.instanceUuid } : {}), ...(r.finding.volumeId ? { volumeId: r.finding.volumeId } : {}), reason: r.reason })),
    runs: [],
    remaining: [],
  };
  for (const r of out.reportOnly) options.say(`report only: ${r.kind} ${[r.instanceUuid, r.volumeId].filter(Boolean).join(' ')}: ${r.reason}`);
  if (options.dryRun) {
    for (const p of await planRepairs(deps, selection.targets)) {
      out.planned.push({ target: describeTarget(p.target), findings: p.target.findings.map((f) => f.kind), actions: p.actions, notes: p.notes });
      options.say(`would repair ${describeTarget(p.target)} (${[...new Set(p.target.findings.map((f) => f.kind))].join(', ')}):`);
      for (const a of p.actions) options.say(`  - ${a}`);
      for (const n of p.notes) options.say(`  (${n})`);
      if (p.actions.length === 0 && p.notes.length === 0) options.say('  nothing: the stores agree now');
    }
    options.say(`dry run: ${selection.targets.length} repair${selection.targets.length === 1 ? '' : 's'} planned, nothing changed`);
    out.remaining = findings;
    return out;
  }
  const runs = await runRepairs({ client: deps.client, taskQueue: deps.taskQueue }, selection.targets, {
    reason: 'tether repair',
    onStart: (run) => options.say(`repairing ${describeTarget(run.target)} (${[...new Set(run.target.findings.map((f) => f.kind))].join(', ')}) as ${run.workflowId}…`),
    onDone: (run: RepairRun) => {
      if (run.error) {
        options.say(`✗ ${describeTarget(run.target)}: ${run.error}`);
        return;
      }
      options.say(`${run.result!.outcome === 'repaired' ? '✓' : '·'} ${describeTarget(run.target)}: ${run.result!.outcome}`);
      for (const a of run.result!.actions) options.say(`  ✓ ${a}`);
      for (const n of run.result!.notes) options.say(`  (${n})`);
    },
  });
  out.runs = runs.map((r) => ({
    target: describeTarget(r.target),
    workflowId: r.workflowId,
    ...(r.result ? { outcome: r.result.outcome, actions: r.result.actions, notes: r.result.notes } : {}),
    ...(r.error ? { error: r.error } : {}),
  }));
  out.remaining = (await inspect(deps)).disagreements.filter(options.filter);
  return out;
}

export interface RepairCommandOptions {
  dryRun?: boolean;
  host?: string;
  allHosts?: boolean;
}

/** `tether repair`: the whole command once its arguments are parsed. */
export async function runRepairCommand(
  ctx: { tether(): ReturnType<CliContext['tether']>; stores(): ReturnType<CliContext['stores']>; config(): Promise<CliContext['config']>; close(): Promise<void> },
  io: { json: () => boolean; print: (value: unknown, text: () => string) => void },
  serverRef: string | undefined,
  volumeRef: string | undefined,
  opts: RepairCommandOptions,
): Promise<void> {
  let libvirt: LibvirtConnection | undefined;
  try {
    const tether = await ctx.tether();
    tether.authorizeCheck();
    const { db, client, blockStorage } = await ctx.stores();
    const config = await ctx.config();
    const server = serverRef === undefined ? undefined : await tether.resolveServer(serverRef).then((s) => s.uuid, (err: unknown) => {
      if (err instanceof TetherError && err.type === 'InstanceNotFound' && UUID.test(serverRef)) return serverRef; // a deleted server's orphans
      throw err;
    });
    const volume = volumeRef === undefined ? undefined : await tether.resolveVolume(volumeRef).then((v) => v.id, (err: unknown) => {
      if (err instanceof TetherError && err.type === 'VolumeNotFound' && UUID.test(volumeRef)) return volumeRef;
      throw err;
    });
    libvirt = await LibvirtConnection.open(config.libvirtUri);
    const host = opts.allHosts ? undefined : opts.host ?? config.computeHost;
    const deps: RepairCliDeps = { db, client, blockStorage, libvirt, taskQueue: config.controlTaskQueue, host, secretsHost: opts.host ?? config.computeHost };
    const filter = (d: Disagreement) => (server === undefined || d.instanceUuid === server) && (volume === undefined || d.volumeId === volume);
    const found = (await inspect(deps)).disagreements.filter(filter);
    const say = (line: string) => (io.json() ? process.stderr : process.stdout).write(`${line}\n`);
    if (found.length === 0) {
      io.print({ dryRun: Boolean(opts.dryRun), planned: [], reportOnly: [], runs: [], remaining: [] }, () => 'no disagreements: nothing to repair');
      return;
    }
    say(formatDisagreements(found));
    const out = await repairFindings(deps, found, { dryRun: Boolean(opts.dryRun), filter, say });
    io.print(out, () => (out.dryRun ? '' : out.remaining.length === 0 ? 'check after repair: no disagreements' : `check after repair:\n${formatDisagreements(out.remaining)}`));
    process.exitCode = out.dryRun || out.remaining.length === 0 ? 0 : 1;
  } catch (err) {
    const message = err instanceof TetherError ? `${err.message} (${err.type})` : (err as Error).message;
    process.stderr.write(`error: ${message}\n`);
    process.exitCode = err instanceof TetherError && err.status < 500 ? 2 : 1;
  } finally {
    await libvirt?.close();
    await ctx.close();
  }
}
