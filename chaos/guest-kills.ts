/**
 * Kills with a real guest (`npm run chaos -- --guest`): the stack's compute agents boot every server
 * as the test guest (test/support/guest.ts: Debian's kernel and busybox, driven through its serial
 * console), and each case ends with the guest's data verified as well as the checker:
 *
 *   attach X — the volume holds a pattern written through the guest on an earlier attachment; the
 *     attach is killed during X (the process running X); once converged, an attached volume must be
 *     seen by the guest (by serial) with the pattern's checksum, a rolled-back one must be gone from
 *     the guest and, attached again, read back the same checksum;
 *   detach X — the pattern written through this attachment; a detached volume must be gone from the
 *     guest and read back the checksum once attached again; a volume kept attached must still read it;
 *   migrate X — a server of its own with the written volume, moved to the second compute agent and
 *     killed during X; the guest (booted again on the host the saga left it on) must see the volume
 *     and read the checksum.
 * Cases alternate the bus: even ones SCSI, odd ones virtio (/dev/vdb: the guest cooperates, so a
 * virtio detach completes). Phase `during` by default (paused at X's `after` check: X's effect done,
 * Temporal not told), the target the process running X.
 */
import { randomBytes } from 'node:crypto';
import type { Instance, Volume } from '../src/domain/types.ts';
import { domainTemplateEnv, Guest, guestDomainTemplate } from '../test/support/guest.ts';
import { attachAndWait, detachAndWait, type Harness } from './harness.ts';
import { ATTACH_MATRIX_STEPS, DETACH_MATRIX_STEPS, runKillCase, type CaseHooks, type KillCase } from './kills.ts';
import { LIFECYCLE_STEPS, runLifecycleKill, type LifecycleHooks, type LifecycleKillCase } from './lifecycle-kills.ts';
import type { CaseResult } from './report.ts';

/** The compute agents' environment that boots every server as the test guest (throws when it is not built). */
export async function guestAgentEnv(): Promise<Record<string, string>> {
  return domainTemplateEnv(await guestDomainTemplate());
}

/** Which process runs each forward step (the target of its kill). */
const RUNNER: Record<string, 'control-plane' | 'compute-agent'> = {
  reserveDeviceName: 'compute-agent',
  getHostConnector: 'compute-agent',
  attachDisk: 'compute-agent',
  detachDisk: 'compute-agent',
};

export interface GuestCase {
  name: string;
  run: (h: Harness, run: number) => Promise<CaseResult>;
}

/** Open consoles, by server (the shared servers keep theirs between cases). */
const consoles = new Map<string, Guest>();

async function guestOf(h: Harness, server: Instance, reconnect = false): Promise<Guest> {
  let g = consoles.get(server.uuid);
  if (g && reconnect) {
    g.close();
    g = undefined;
  }
  if (!g) {
    g = await Guest.open(server, h.stack.libvirt, 180_000);
    consoles.set(server.uuid, g);
  }
  return g;
}

export function closeGuestConsoles(): void {
  for (const g of consoles.values()) g.close();
  consoles.clear();
}

function hooksFor(h: Harness, op: 'attach' | 'detach', device: string | undefined): CaseHooks {
  let written = '';
  return {
    prefix: `guest ${device ? 'virtio' : 'scsi'} `,
    ...(device ? { device } : {}),
    async prepare(server, volume) {
      const guest = await guestOf(h, server);
      const pattern = `chaos-${randomBytes(4).toString('hex')}`;
      if (op === 'attach') {
        // written through an earlier attachment, which then goes
        await attachAndWait(h, server, volume, device);
        await guest.waitForDisk(volume.id);
        written = await guest.write(volume.id, pattern);
        await detachAndWait(h, server, volume);
        await guest.waitForNoDisk(volume.id);
      } else {
        await guest.waitForDisk(volume.id);
        written = await guest.write(volume.id, pattern);
      }
    },
    async verify(server, volume, state) {
      const guest = await guestOf(h, server);
      const problems: string[] = [];
      if (state === 'attached') {
        await guest.waitForDisk(volume.id);
      } else if (state === 'absent') {
        await guest.waitForNoDisk(volume.id);
        await attachAndWait(h, server, volume, device);
        await guest.waitForDisk(volume.id);
      } else {
        return [`the guest cannot be judged: the stores say ${state}`];
      }
      const read = await guest.read(volume.id);
      if (read !== written) problems.push(`the guest reads ${read.slice(0, 12)}… from the volume, ${written.slice(0, 12)}… was written`);
      return problems;
    },
  };
}

function migrateHooks(h: Harness, device: string | undefined): LifecycleHooks {
  let written = '';
  return {
    ...(device ? { device } : {}),
    async prepare(server: Instance, volume: Volume) {
      const guest = await guestOf(h, server);
      await guest.waitForDisk(volume.id);
      written = await guest.write(volume.id, `chaos-${randomBytes(4).toString('hex')}`);
    },
    async verify(server: Instance, volume: Volume) {
      // the domain was started again (on the target, or back on the source)
      const guest = await guestOf(h, server, true);
      try {
        await guest.waitForDisk(volume.id);
        const read = await guest.read(volume.id);
        return read === written ? [] : [`after the migrate the guest reads ${read.slice(0, 12)}…, ${written.slice(0, 12)}… was written`];
      } finally {
        guest.close();
        consoles.delete(server.uuid);
      }
    },
  };
}

/**
 * Every step of attach and detach (killing the process running it, during the step) and every step
 * of migrate, each with the guest's data verified; `allTargets` adds Temporal and PostgreSQL kills.
 */
export function guestCases(servers: Instance[], o: { phases?: ReadonlyArray<'before' | 'during' | 'after'>; allTargets?: boolean } = {}): GuestCase[] {
  const phases = o.phases ?? ['during'];
  const cases: GuestCase[] = [];
  let i = 0;
  for (const [op, steps] of [['attach', ATTACH_MATRIX_STEPS], ['detach', DETACH_MATRIX_STEPS]] as const) {
    for (const step of steps) {
      if (step === 'takeGeneration') continue; // a local activity with no point of its own: its neighbours cover it
      for (const phase of phases) {
        const runner = RUNNER[step] ?? 'control-plane';
        for (const target of o.allTargets ? [runner, 'temporal', 'postgres'] as const : [runner]) {
          const c: KillCase = { op, step, phase, target };
          const device = i % 2 === 1 ? '/dev/vdb' : undefined;
          const server = servers[i % servers.length]!;
          const name = `guest ${device ? 'virtio' : 'scsi'} kill ${op} ${step} ${phase} ${target}`;
          cases.push({ name, run: (h, r) => runKillCase(h, c, r, server, hooksFor(h, op, device)) });
          i++;
        }
      }
    }
  }
  for (const step of LIFECYCLE_STEPS.migrate) {
    for (const phase of phases.filter((p): p is 'before' | 'during' => p !== 'after')) {
      for (const target of o.allTargets ? [step.runner, 'temporal', 'postgres'] as const : [step.runner]) {
        const c: LifecycleKillCase = { saga: 'migrate', step, phase, target };
        const device = i % 2 === 1 ? '/dev/vdb' : undefined;
        cases.push({ name: `guest ${device ? 'virtio' : 'scsi'} kill migrate ${step.step} ${phase} ${target}`, run: (h, r) => runLifecycleKill(h, c, r, migrateHooks(h, device)) });
        i++;
      }
    }
  }
  return cases;
}
