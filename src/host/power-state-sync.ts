/**
 * The power-state sync of a compute host (Nova's `_sync_power_states`): a domain that stopped
 * running behind tether's back — its QEMU killed or crashed, the guest powered itself off — is
 * recorded as `stopped` (Nova's SHUTOFF), so that tether's records say what the host runs and the
 * server can be started again (`os-start` is refused while the record says active).
 *
 * Only instances of this host at rest are touched: vm_state `active` or `paused` with no task_state
 * (a server action holding the instance owns its power state). The update is conditional on exactly
 * that state, so a stop, start or migrate that begins between the look at libvirt and the write
 * wins. The other direction (recorded stopped, domain running) is left alone, as Nova leaves it to
 * an operator: starting a guest is never done behind anybody's back.
 */
import type { Queryable } from '../db/database.ts';
import type { LibvirtConnection } from '../libvirt/binding.ts';
import type { VmState } from '../domain/types.ts';
import { instancesAtRest, markStoppedIfAtRest } from '../db/instances.ts';

/** States whose record says the domain runs. */
const RUNNING_STATES: readonly VmState[] = ['active', 'paused'];

export interface PowerStateChange {
  uuid: string;
  /** What the record said. */
  was: VmState;
  /** What libvirt says about the domain (`shutoff`, `crashed`, …). */
  domainState: string;
}

/** Records as stopped the instances of `host` whose domain exists but does not run; returns what changed. */
export async function syncPowerStates(deps: {
  db: Queryable;
  libvirt: Pick<LibvirtConnection, 'lookupDomain'>;
  host: string;
}): Promise<PowerStateChange[]> {
  const changed: PowerStateChange[] = [];
  for (const row of await instancesAtRest(deps.db, deps.host, RUNNING_STATES)) {
    const info = await deps.libvirt.lookupDomain(row.uuid);
    // No domain at all is the checker's missing-domain, for a person; a running one agrees.
    if (!info || info.active) continue;
    if (await markStoppedIfAtRest(deps.db, row.uuid, deps.host, row.vmState)) changed.push({ uuid: row.uuid, was: row.vmState, domainState: info.state });
  }
  return changed;
}
