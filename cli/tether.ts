/**
 * The `tether` command line: servers, volumes and attachments against a running stack, through the
 * same service layer as the HTTP API. Names or UUIDs wherever a server or volume is named.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { TetherError } from '../src/errors.ts';
import type { StepProgress } from '../src/domain/steps.ts';
import type { TetherService } from '../src/service/tether-service.ts';
import type { LibvirtConnection } from '../src/libvirt/binding.ts';
import type { CliContext } from './context.ts';
import { registerIdentityCommands } from './identity-command.ts';
import { registerRepairCommand } from './repair-command.ts';
import { elapsed, table } from './format.ts';
import { serviceState } from '../src/domain/compute-hosts.ts';

// Start-up: this file imports only commander and files without dependencies, so that `tether --help`
// loads nothing heavy. The connections (Temporal's client, pg, libvirt, the service layer) are imported
// when a command runs (test/cli-build.test.ts checks which modules --help loads).
let json = false;
let projectId: string | undefined;
let context: Promise<CliContext> | undefined;
/** The CLI's connections, imported and configured on first use (after commander parsed --project). */
function cli(): Promise<CliContext> {
  context ??= import('./context.ts').then(({ CliContext }) => {
    const c = new CliContext();
    c.projectId = projectId;
    return c;
  });
  return context;
}
const ctx = {
  tether: async () => (await cli()).tether(),
  stores: async () => (await cli()).stores(),
  config: async () => (await cli()).config,
  close: async () => {
    if (context) await (await context.catch(() => undefined))?.close();
  },
};

function print(value: unknown, text: () => string): void {
  process.stdout.write((json ? JSON.stringify(value, null, 2) : text()) + '\n');
}

/** Prints an error as one line; exit code 2 for a refusal (4xx), 1 otherwise. */
function reportError(err: unknown): void {
  const message = err instanceof TetherError ? `${err.message} (${err.type})` : (err as Error).message;
  process.stderr.write(`error: ${message}\n`);
  process.exitCode = err instanceof TetherError && err.status < 500 ? 2 : 1;
}

/** Wraps an action: opens the service, prints errors as one line, sets the exit code. */
function action<A extends unknown[]>(fn: (tether: TetherService, ...args: A) => Promise<void>) {
  return async (...args: A) => {
    try {
      await fn(await ctx.tether(), ...args);
    } catch (err) {
      reportError(err);
    } finally {
      await ctx.close();
    }
  };
}

/** An option value that must be a whole number of at least 1 (commander reports the refusal). */
function positiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('Not a positive integer.');
  return n;
}

function stepLine(s: StepProgress): string {
  const mark = s.status === 'completed' ? '✓' : s.status === 'compensated' ? '↺' : s.status === 'running' ? '…' : '✗';
  return `  ${mark} ${s.description}${s.endedAt ? ` (${elapsed(s.startedAt, s.endedAt)})` : ''}${s.error ? `: ${s.error}` : ''}`;
}

/**
 * Prints each step as it completes (from the workflow's `progress` query) until `done` settles,
 * then rethrows its failure.
 */
async function followSteps<T>(tether: TetherService, handle: WorkflowHandle, done: Promise<T>, out: NodeJS.WritableStream): Promise<T> {
  const printed = new Set<string>();
  let finished = false;
  const settled = done.finally(() => (finished = true));
  const report = (steps: StepProgress[]) => {
    steps.forEach((s, i) => {
      const key = `${i}:${s.status}`;
      if (s.status === 'running' || printed.has(key)) return;
      printed.add(key);
      out.write(`${stepLine(s)}\n`);
    });
  };
  while (!finished) {
    const progress = await tether.attachProgress(handle).catch(() => null);
    if (progress) report(progress.steps);
    await Promise.race([sleep(100), settled.catch(() => undefined)]);
  }
  const final = await tether.attachProgress(handle).catch(() => null);
  if (final) report(final.steps);
  return settled;
}

const program = new Command('tether')
  .description('Durable volume attachment for libvirt clouds, on Temporal. Talks to a running stack (npm start).')
  .addOption(new Option('--json', 'print machine-readable JSON'))
  .addOption(
    new Option('--project <id>', "act as a member of this project: only its servers and volumes, Nova's rules (default: an operator, admin of every project)").env(
      'TETHER_PROJECT_ID',
    ),
  )
  .hook('preAction', (cmd) => {
    json = Boolean(cmd.opts().json);
    projectId = cmd.opts().project as string | undefined;
  })
  .showHelpAfterError()
  // commander exits 1 on a usage error (unknown command or option, missing argument, bad choice); tether's refusals exit 2
  .exitOverride();

const server = program.command('server').description('manage servers (instances backed by libvirt domains)');

server
  .command('create')
  .description('define and start a small QEMU domain on a compute host and register it as a server')
  .argument('<name>', 'server name')
  .option('--host <host>', 'compute host (default: TETHER_COMPUTE_HOST or compute-1)')
  .option('--no-wait', 'return once registered, without waiting for the domain to run')
  .action(
    action(async (tether, name: string, opts: { host?: string; wait: boolean }) => {
      const { instance, handle } = await tether.createServer({ name, ...(opts.host ? { host: opts.host } : {}) });
      if (opts.wait) {
        if (!json) process.stderr.write(`Creating server ${name} (${instance.uuid}) on ${instance.host}…\n`);
        await handle.result();
      }
      const created = await tether.resolveServer(instance.uuid);
      print(created, () => `${created.name} ${created.uuid} ${created.vmState} on ${created.host}`);
    }),
  );

server
  .command('import')
  .description("admin: take a libvirt domain that runs on a compute host without tether into tether, without restarting it: a server (its uuid the domain's), a block device mapping and attachment for each disk whose serial is a volume of the block storage; the other disks are left alone and listed")
  .argument('<domain>', 'the libvirt domain name or UUID')
  .option('--host <host>', 'the compute host it runs on (default: TETHER_COMPUTE_HOST or compute-1)')
  .option('--name <name>', "the server's name (default: the domain's)")
  .action(
    action(async (tether, domain: string, opts: { host?: string; name?: string }) => {
      const r = await tether.importServer({ domain, ...(opts.host ? { host: opts.host } : {}), ...(opts.name ? { name: opts.name } : {}) });
      print(r, () => [
        `${r.alreadyImported ? 'already imported' : 'imported'}: ${r.name} ${r.instanceUuid} ${r.vmState} on ${r.host}`,
        ...r.adopted.map((a) => `  volume ${a.volumeId} at ${a.device} (attachment ${a.attachmentId})`),
        ...r.leftAlone.map((d) => `  left alone: ${d.target}${d.source ? ` (${d.source})` : ''}: ${d.reason}`),
      ].join('\n'));
    }),
  );

server
  .command('shelve')
  .description('shelve a server: power its domain off (volumes stay attached)')
  .argument('<server>', 'server name or UUID')
  .action(
    action(async (tether, ref: string) => {
      const s = await tether.shelveServer(ref);
      print(s, () => `${s.name} ${s.uuid} ${s.vmState}`);
    }),
  );

server
  .command('shelve-offload')
  .description('offload a shelved server from its host: its domain is removed, its volumes stay reserved')
  .argument('<server>', 'server name or UUID')
  .action(
    action(async (tether, ref: string) => {
      const s = await tether.shelveOffloadServer(ref);
      print(s, () => `${s.name} ${s.uuid} ${s.vmState}`);
    }),
  );

server
  .command('unshelve')
  .description('start a shelved server again (on a host, when offloaded) and connect its volumes')
  .argument('<server>', 'server name or UUID')
  .option('--host <host>', 'compute host for an offloaded server (default: TETHER_COMPUTE_HOST)')
  .action(
    action(async (tether, ref: string, opts: { host?: string }) => {
      const { instance, devices } = await tether.unshelveServer(ref, opts.host);
      print({ ...instance, devices }, () =>
        [`${instance.name} ${instance.uuid} ${instance.vmState} on ${instance.host}`, ...Object.entries(devices).map(([v, d]) => `  volume ${v} on ${d}`)].join('\n'),
      );
    }),
  );

server
  .command('migrate')
  .description('move a server to another compute host (its domain, with every attached disk, is defined there)')
  .argument('<server>', 'server name or UUID')
  .requiredOption('--host <host>', 'target compute host')
  .action(
    action(async (tether, ref: string, opts: { host: string }) => {
      const s = await tether.migrateServer(ref, opts.host);
      print(s, () => `${s.name} ${s.uuid} ${s.vmState} on ${s.host}`);
    }),
  );

server
  .command('delete')
  .description('delete a server: its volumes are detached, those marked delete-on-termination deleted')
  .argument('<server>', 'server name or UUID')
  .action(
    action(async (tether, ref: string) => {
      const { instance, deletedVolumes } = await tether.deleteServer(ref);
      print({ deleted: instance.uuid, deletedVolumes }, () =>
        `deleted ${instance.name} ${instance.uuid}${deletedVolumes.length ? `; deleted volumes ${deletedVolumes.join(', ')}` : ''}`,
      );
    }),
  );

server
  .command('list')
  .description('list servers')
  .option('--host <host>', 'only servers on this compute host')
  .option('--name <name>', 'only servers with this name')
  .action(
    action(async (tether, opts: { host?: string; name?: string }) => {
      const servers = await tether.listServers(opts);
      print(servers, () =>
        table(['ID', 'Name', 'Status', 'Task', 'Host', 'AZ'], servers.map((s) => [s.uuid, s.name, s.vmState, s.taskState, s.host, s.availabilityZone])),
      );
    }),
  );

server
  .command('show')
  .description('show one server')
  .argument('<server>', 'server name or UUID')
  .action(
    action(async (tether, ref: string) => {
      const s = await tether.showServer(ref);
      print(s, () => table(['Field', 'Value'], Object.entries(s).map(([k, v]) => [k, v as string])));
    }),
  );

const volume = program.command('volume').description("manage volumes of tether's embedded volume service");

volume
  .command('create')
  .description('create a volume (a qcow2 file in the data folder; LUKS-encrypted with --encrypted or --type luks)')
  .argument('<name>', 'volume name')
  .requiredOption('--size <GiB>', 'size in GiB', (v) => Number(v))
  .option('--multiattach', 'allow attaching to several servers at once')
  .option('--type <type>', "volume type: __DEFAULT__, or luks (encrypted; its key kept encrypted under TETHER_VOLUME_KEY)")
  .option('--encrypted', 'same as --type luks')
  .action(
    action(async (tether, name: string, opts: { size: number; multiattach?: boolean; type?: string; encrypted?: boolean }) => {
      if (opts.encrypted && opts.type !== undefined && opts.type !== 'luks') throw new TetherError('InvalidInput', `--encrypted makes a volume of type luks, not ${opts.type}.`);
      const volumeType = opts.encrypted ? 'luks' : (opts.type ?? null);
      const v = await tether.createVolume({ name, size: opts.size, multiattach: opts.multiattach ?? false, volumeType });
      print(v, () => `${v.name} ${v.id} ${v.status} ${v.size} GiB${v.encrypted ? ' encrypted' : ''}`);
    }),
  );

volume
  .command('list')
  .description('list volumes')
  .action(
    action(async (tether) => {
      const volumes = await tether.listVolumes();
      print(volumes, () =>
        table(
          ['ID', 'Name', 'Status', 'Size', 'Attached to'],
          volumes.map((v) => [v.id, v.name, v.status, v.size, v.attachments.map((a) => `${a.serverId} on ${a.device ?? '-'}`).join(', ')]),
        ),
      );
    }),
  );

volume
  .command('extend')
  .description('grow a volume to a new size: an available one at once; an in-use one under its running server (shows each step)')
  .argument('<volume>', 'volume name or UUID')
  .requiredOption('--size <GiB>', 'the new size in GiB (larger than the current one)', positiveInteger)
  .option('--no-wait', 'return once the extend is accepted (the volume is extending)')
  .action(
    action(async (tether, ref: string, opts: { size: number; wait: boolean }) => {
      const out = json ? process.stderr : process.stdout;
      const { volume: v, started } = await tether.extendVolume({ volume: ref, newSize: opts.size, inUse: true });
      if (!started) {
        print(v, () => `${v.name ?? v.id} ${v.id} ${v.status} ${v.size} GiB`);
        return;
      }
      out.write(`Extending volume ${v.id} to ${opts.size} GiB under server ${started.acceptance.instanceUuid} (workflow ${started.workflowId})\n`);
      if (!opts.wait) {
        print(started.acceptance, () => 'accepted');
        return;
      }
      const result = await followSteps(tether, started.handle, tether.awaitExtend(started.handle), out);
      print(result, () => `extended to ${result.size} GiB${result.live ? ` (the running server sees ${result.capacity} bytes)` : ' (the server sees it at its next start)'}`);
    }),
  );

volume
  .command('migrate')
  .description("admin: move an in-use volume's data to another volume under its running server, as Cinder's migration does (the server's swap: block copy, pivot); the volume keeps its id; shows each step")
  .argument('<volume>', 'volume name or UUID (in-use)')
  .option('--to <volume>', 'the destination: an available volume of the same size (default: a new one made like it)')
  .option('--no-wait', 'return once the swap is started')
  .action(
    action(async (tether, ref: string, opts: { to?: string; wait: boolean }) => {
      const out = json ? process.stderr : process.stdout;
      const started = await tether.migrateVolume({ volume: ref, ...(opts.to !== undefined ? { to: opts.to } : {}) });
      out.write(`Migrating volume ${ref} to ${started.destination.id} (workflow ${started.workflowId})\n`);
      if (!opts.wait) {
        print({ workflowId: started.workflowId, destination: started.destination.id }, () => 'accepted');
        return;
      }
      const result = await followSteps(tether, started.handle, tether.awaitSwap(started.handle), out);
      print(result, () => `migrated: volume ${result.volumeId} keeps its id, its data now in the copy (disk ${result.target} of server ${result.instanceUuid})`);
    }),
  );

volume
  .command('delete')
  .description('delete an available volume')
  .argument('<volume>', 'volume name or UUID')
  .action(
    action(async (tether, ref: string) => {
      await tether.deleteVolume(ref);
      print({ deleted: ref }, () => `deleted ${ref}`);
    }),
  );

program
  .command('attach')
  .description('attach a volume to a server; shows each step as it completes, then the device')
  .argument('<server>', 'server name or UUID')
  .argument('<volume>', 'volume name or UUID')
  .option('--device <path>', 'device path to request, e.g. /dev/sdc (default: the next free one)')
  .option('--tag <tag>', 'device tag')
  .option('--delete-on-termination', 'delete the volume when the server is deleted')
  .option('--no-wait', 'return once the device is reserved, without waiting for the attach to finish')
  .action(
    action(async (tether, serverRef: string, volumeRef: string, opts: { device?: string; tag?: string; deleteOnTermination?: boolean; wait: boolean }) => {
      const out = json ? process.stderr : process.stdout;
      const started = await tether.attachVolume({
        server: serverRef,
        volume: volumeRef,
        device: opts.device ?? null,
        tag: opts.tag ?? null,
        deleteOnTermination: opts.deleteOnTermination ?? false,
      });
      out.write(`Attaching volume ${started.reservation.volumeId} to server ${started.reservation.instanceUuid} (workflow ${started.workflowId})\n`);
      if (!opts.wait) {
        print(started.reservation, () => `reserved ${started.reservation.device ?? '(device chosen at unshelve)'}`);
        return;
      }
      const result = await followSteps(tether, started.handle, tether.awaitAttach(started.handle), out);
      print(result, () => `attached ${result.device}`);
    }),
  );

program
  .command('detach')
  .description('detach a volume from a server; shows each step as it completes')
  .argument('<server>', 'server name or UUID')
  .argument('<volume>', 'volume name or UUID')
  .option('--force', "admin: detach even if the server's host is gone (Nova bug 1909120): the host is asked for at most --host-wait seconds, then fenced (its agent removes the disk before it serves again); the volume is released only after one or the other")
  .option('--host-wait <seconds>', 'with --force: how long to wait for the host (default: TETHER_FORCE_DETACH_HOST_WAIT_SECONDS or 30; 0: fence at once)', (v) => Number(v))
  .option('--no-wait', 'return once the detach is accepted')
  .action(
    action(async (tether, serverRef: string, volumeRef: string, opts: { force?: boolean; hostWait?: number; wait: boolean }) => {
      const out = json ? process.stderr : process.stdout;
      if (opts.hostWait !== undefined && !opts.force) throw new TetherError('InvalidInput', '--host-wait goes with --force.');
      const started = opts.force
        ? await tether.forceDetachVolume({ server: serverRef, volume: volumeRef, ...(opts.hostWait !== undefined ? { hostWaitSeconds: opts.hostWait } : {}) })
        : await tether.detachVolume({ server: serverRef, volume: volumeRef });
      out.write(`${started.forced ? 'Force-detaching' : 'Detaching'} (workflow ${started.workflowId})\n`);
      if (!opts.wait) {
        print({ workflowId: started.workflowId }, () => 'accepted');
        return;
      }
      if (!started.forced) {
        await followSteps(tether, started.handle, tether.awaitDetach(started.handle), out);
        print({ workflowId: started.workflowId, detached: true }, () => 'detached');
        return;
      }
      const result = await followSteps(tether, started.handle, tether.awaitForceDetach(started.handle), out);
      print({ workflowId: started.workflowId, detached: true, ...result }, () =>
        result.hostDetached ? `detached (host ${result.host} disconnected the disk)` : `detached (host ${result.host} fenced: its agent removes the disk before it serves again)`,
      );
    }),
  );

const service = program.command('service').description("compute services (Nova's os-services): one per compute host");

service
  .command('list')
  .description('list compute services: state (up when the agent checked in within 60 s), forced down, fenced')
  .option('--host <host>', 'only this host')
  .action(
    action(async (tether, opts: { host?: string }) => {
      const services = await tether.listComputeServices(opts.host ? { host: opts.host } : {});
      print(services, () =>
        table(
          ['Host', 'Id', 'State', 'Status', 'Forced down', 'Fenced', 'Last seen'],
          services.map((h) => [
            h.host,
            h.serviceUuid,
            serviceState(h),
            h.disabled ? `disabled${h.disabledReason ? ` (${h.disabledReason})` : ''}` : 'enabled',
            h.forcedDown,
            h.fence ? `since ${h.fence.fencedAt} by ${h.fence.fencedBy ?? '?'}` : 'no',
            h.lastSeenAt,
          ]),
        ),
      );
    }),
  );

service
  .command('set')
  .description("change a compute service: --down says the host is gone (a detach of its servers' volumes then fences it at once)")
  .argument('<host>', 'compute host')
  .option('--down', 'force the service down')
  .option('--up', 'clear forced down')
  .option('--disable', 'disable the service')
  .option('--enable', 'enable the service')
  .option('--reason <text>', 'with --disable: why')
  .action(
    action(async (tether, host: string, opts: { down?: boolean; up?: boolean; disable?: boolean; enable?: boolean; reason?: string }) => {
      if (opts.down && opts.up) throw new TetherError('InvalidInput', '--down and --up contradict each other.');
      if (opts.disable && opts.enable) throw new TetherError('InvalidInput', '--disable and --enable contradict each other.');
      const h = await tether.updateComputeService(
        { host },
        {
          ...(opts.down || opts.up ? { forcedDown: Boolean(opts.down) } : {}),
          ...(opts.disable || opts.enable ? { disabled: Boolean(opts.disable) } : {}),
          ...(opts.reason !== undefined ? { disabledReason: opts.reason } : {}),
        },
      );
      print(h, () => `${h.host} ${serviceState(h)}${h.forcedDown ? ' (forced down)' : ''}${h.disabled ? ' disabled' : ' enabled'}`);
    }),
  );

program
  .command('retry')
  .description('retry the latest failed attach of a volume to a server (a fresh run of the same workflow id)')
  .argument('<server>', 'server name or UUID')
  .argument('<volume>', 'volume name or UUID')
  .action(
    action(async (tether, serverRef: string, volumeRef: string) => {
      const out = json ? process.stderr : process.stdout;
      const started = await tether.retryAttach(serverRef, volumeRef);
      out.write(`Retrying the attach (workflow ${started.workflowId})\n`);
      const result = await followSteps(tether, started.handle, tether.awaitAttach(started.handle), out);
      print(result, () => `attached ${result.device}`);
    }),
  );

program
  .command('history')
  .description('print each step of the latest (or a given) attach or detach of a volume to a server, with timing and outcome')
  .argument('<server>', 'server name or UUID')
  .argument('<volume>', 'volume name or UUID')
  .addOption(new Option('--kind <kind>', 'only this kind of operation').choices(['attach', 'detach']))
  .option('--run <runId>', 'a given run instead of the latest')
  .action(
    action(async (tether, serverRef: string, volumeRef: string, opts: { kind?: 'attach' | 'detach'; run?: string }) => {
      const h = await tether.operationHistory(serverRef, volumeRef, { ...(opts.kind ? { kind: opts.kind } : {}), ...(opts.run ? { runId: opts.run } : {}) });
      print(h, () =>
        [
          `${h.kind} ${h.workflowId} run ${h.runId}`,
          `  status ${h.status} (${h.state}), started ${h.startTime}${h.closeTime ? `, closed ${h.closeTime}` : ''}`,
          ...h.steps.map(stepLine),
          ...(h.error ? [`  reason: ${h.error.message} (${h.error.type})`] : []),
        ].join('\n'),
      );
    }),
  );

program
  .command('operations')
  .description('list recent attaches and detaches, newest first')
  .option('--failed', 'only failed ones')
  .option('--limit <n>', 'at most this many', positiveInteger, 50)
  .action(
    action(async (tether, opts: { failed?: boolean; limit: number }) => {
      const ops = await tether.listOperations({ failed: opts.failed ?? false, limit: opts.limit });
      print(ops, () =>
        table(
          ['Kind', 'Status', 'State', 'Server', 'Volume', 'Host', 'Started', 'Workflow'],
          ops.map((o) => [o.kind, o.status, o.state, o.instanceUuid, o.volumeId, o.host, o.startTime, o.workflowId]),
        ),
      );
    }),
  );

program
  .command('notifications')
  .description('the newest Nova-style notifications of the outbox (instance.volume_attach/volume_detach .start/.end/.error), newest first, and when each was published')
  .option('--limit <n>', 'at most this many', positiveInteger, 20)
  .action(async (opts: { limit: number }) => {
    try {
      (await ctx.tether()).authorizeCheck();
      const { db } = await ctx.stores();
      const { recentNotifications } = await import('../src/notifications/outbox.ts');
      const rows = await recentNotifications(db, { limit: opts.limit });
      print(rows, () =>
        table(
          ['Created', 'Event', 'Priority', 'Publisher', 'Server', 'Volume', 'Published', 'Message id'],
          rows.map((n) => [n.createdAt.toISOString(), n.eventType, n.priority, n.publisherId, n.instanceUuid, n.volumeId, n.publishedAt?.toISOString() ?? 'not yet', n.messageId]),
        ),
      );
    } catch (err) {
      reportError(err);
    } finally {
      await ctx.close();
    }
  });

program
  .command('check')
  .description('compare the three stores (BDMs, block storage, libvirt XML) and report every disagreement')
  .option('--host <host>', 'only instances on this compute host (default: TETHER_COMPUTE_HOST)')
  .option('--all-hosts', 'every instance (needs this host to reach every libvirt, so only for one-host setups)')
  .option('--in-flight', 'also list findings explained by an attach or detach still running')
  .option('--repair', 'then repair the disagreements (as `tether repair`) and check again')
  .option('--dry-run', 'with --repair: print what each repair would do, change nothing')
  .action(async (opts: { host?: string; allHosts?: boolean; inFlight?: boolean; repair?: boolean; dryRun?: boolean }) => {
    let libvirt: LibvirtConnection | undefined;
    try {
      (await ctx.tether()).authorizeCheck();
      const { db, client, blockStorage } = await ctx.stores();
      const config = await ctx.config();
      const [{ LibvirtConnection }, { formatDisagreements, inspectInvariants }] = await Promise.all([
        import('../src/libvirt/binding.ts'),
        import('../src/checker/invariants.ts'),
      ]);
      libvirt = await LibvirtConnection.open(config.libvirtUri);
      const report = await inspectInvariants({
        db,
        blockStorage,
        libvirt,
        client,
        controlTaskQueue: config.controlTaskQueue,
        ...(opts.allHosts ? {} : { host: opts.host ?? config.computeHost }),
      });
      if (opts.repair && report.disagreements.length > 0) {
        const { repairFindings } = await import('./repair-run.ts');
        const say = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
        say(formatDisagreements(report.disagreements));
        const host = opts.allHosts ? undefined : opts.host ?? config.computeHost;
        const deps = { db, client, blockStorage, libvirt, taskQueue: config.controlTaskQueue, host, secretsHost: opts.host ?? config.computeHost };
        const out = await repairFindings(deps, report.disagreements, { dryRun: Boolean(opts.dryRun), filter: () => true, say });
        print({ ...report, repair: out }, () => (out.dryRun ? '' : `check after repair: ${formatDisagreements(out.remaining)}`));
        process.exitCode = out.dryRun || out.remaining.length === 0 ? 0 : 1;
        return;
      }
      print(report, () =>
        [
          formatDisagreements(report.disagreements),
          ...(opts.inFlight && report.inFlight.length ? ['', 'in flight:', formatDisagreements(report.inFlight)] : []),
        ].join('\n'),
      );
      process.exitCode = report.disagreements.length ? 1 : 0;
    } catch (err) {
      process.stderr.write(`error: ${(err as Error).message}\n`);
      process.exitCode = 2;
    } finally {
      await libvirt?.close();
      await ctx.close();
    }
  });

program
  .command('attachments')
  .description("list a server's volume attachments (its block device mappings)")
  .argument('<server>', 'server name or UUID')
  .action(
    action(async (tether, ref: string) => {
      const { bdms } = await tether.listAttachments(ref);
      print(bdms, () =>
        table(
          ['Volume', 'Device', 'Status', 'Tag', 'Delete on termination', 'Attachment', 'BDM'],
          bdms.map((b) => [b.volumeId, b.deviceName, b.attachStatus, b.tag, b.deleteOnTermination, b.attachmentId, b.uuid]),
        ),
      );
    }),
  );

const attachment = program.command('attachment').description("change a server's volume attachment");

attachment
  .command('set')
  .description('change a volume attachment: whether the volume is deleted with its server (Nova 2.85)')
  .argument('<server>', 'server name or UUID')
  .argument('<volume>', 'volume name or UUID')
  .option('--delete-on-termination', 'delete the volume when the server is deleted')
  .option('--no-delete-on-termination', 'keep the volume when the server is deleted')
  .action(
    action(async (tether, serverRef: string, volumeRef: string, opts: { deleteOnTermination?: boolean }) => {
      if (opts.deleteOnTermination === undefined) throw new TetherError('InvalidInput', 'Nothing to change: give --delete-on-termination or --no-delete-on-termination.');
      const v = await tether.resolveVolume(volumeRef);
      const b = await tether.updateVolumeAttachment({ server: serverRef, volumeId: v.id, changes: { deleteOnTermination: opts.deleteOnTermination } });
      print(b, () => `volume ${b.volumeId} on ${b.deviceName ?? '-'}: delete on termination ${b.deleteOnTermination ? 'yes' : 'no'}`);
    }),
  );

registerIdentityCommands(program);
registerRepairCommand(program, ctx, { json: () => json, print });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // commander has printed `error: …` (and the help) already; --help and --version end here with exit code 0
  if (!(err instanceof CommanderError)) throw err;
  // `tether` or `tether server` alone: commander shows the help as an error, without saying so
  if (err.code === 'commander.help' && err.exitCode !== 0) process.stderr.write('error: no command given (the commands are listed above)\n');
  process.exitCode = err.exitCode === 0 ? 0 : 2;
}
