/**
 * `tether repair [--dry-run] [SERVER [VOLUME]]`: the checker's disagreements (in-flight findings are
 * never repaired) mapped to repair sagas (src/repair/policy.ts), started on the control task queue in
 * line with each pair's attaches and detaches, each printed as it starts and ends; then the check
 * again. `--dry-run` prints what each saga would do, read from the stores now, and changes nothing.
 * Registered here with commander only; the work is in cli/repair-run.ts, imported when it runs.
 */
import type { Command } from 'commander';
import type { runRepairCommand } from './repair-run.ts';

export function registerRepairCommand(
  program: Command,
  ctx: Parameters<typeof runRepairCommand>[0],
  io: Parameters<typeof runRepairCommand>[1],
): void {
  program
    .command('repair')
    .description('repair what `tether check` finds (BDMs, block storage, libvirt, secrets) with repair sagas in line with attaches and detaches; then check again')
    .argument('[server]', 'only findings of this server (name or UUID)')
    .argument('[volume]', 'only findings of this volume (name or UUID)')
    .option('--dry-run', 'print what each repair would do, change nothing')
    .option('--host <host>', 'only instances on this compute host (default: TETHER_COMPUTE_HOST)')
    .option('--all-hosts', 'every instance (needs this host to reach every libvirt, so only for one-host setups)')
    .action(async (serverRef: string | undefined, volumeRef: string | undefined, opts: { dryRun?: boolean; host?: string; allHosts?: boolean }) => {
      const { runRepairCommand } = await import('./repair-run.ts');
      await runRepairCommand(ctx, io, serverRef, volumeRef, opts);
    });
}
