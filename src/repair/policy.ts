/**
 * Every finding kind of the checker (src/checker/invariants.ts) mapped to the repair saga that
 * brings the stores back into agreement, or to "report only" with the reason a person must decide.
 * The reconciler's per-kind policy starts from this table (an operator may turn a repairable kind to
 * report only, never the reverse).
 */
import type { DisagreementKind } from '../checker/invariants.ts';

/**
 * - pair: repairVolumePair on the (server, volume) the finding names (plans from every store);
 * - volume-status: repairVolumeStatus (the status made to agree with the attachments);
 * - qemu-orphans: repairQemuOrphans on the instance's queue;
 * - leaked-secret: repairLeakedSecret on the checked host's queue;
 * - report-only: nothing is started.
 */
export type RepairTargetKind = 'pair' | 'volume-status' | 'qemu-orphans' | 'leaked-secret' | 'report-only';

export interface KindRepair {
  target: RepairTargetKind;
  /** What the repair does, or why it is only reported. */
  what: string;
}

export const REPAIR_BY_KIND: Record<DisagreementKind, KindRepair> = {
  'bdm-without-disk': { target: 'pair', what: 'the disk is put back into the domain (persistent config and live) from the BDM, its connection refreshed first when the attachment is also wrong' },
  'disk-without-bdm': { target: 'pair', what: 'with a live attachment of the pair: the BDM is recreated for the disk (as its target) and its connection refreshed; without one: the disk and its secrets are removed' },
  'device-mismatch': { target: 'pair', what: "the BDM's device name follows the disk's target (where the guest sees it)" },
  'bdm-without-attachment': { target: 'pair', what: 'the connection is refreshed (nova-manage volume_attachment refresh): an attachment made with the host connector, completed, recorded on the BDM; a volume the block storage no longer knows: BDM retired, disk removed' },
  'unknown-attachment': { target: 'pair', what: 'with the disk in the domain: its BDM recreated; without: the attachment deleted' },
  'attachment-mismatch': { target: 'pair', what: 'the connection is refreshed: the live attachment updated, completed and recorded on the BDM' },
  'volume-status-mismatch': { target: 'volume-status', what: "the volume's status is set to what its attachments say (reset-state from the facts)" },
  'stuck-volume': { target: 'volume-status', what: "the volume's status is set to what its attachments say" },
  'stuck-bdm': { target: 'pair', what: 'with its disk in the domain: completed as attached (connection refreshed); without: the half-done operation finished backwards (attachment deleted, BDM retired)' },
  'orphan-bdm': { target: 'pair', what: "the BDM of a deleted or unknown instance is retired and its attachment deleted (the reconciler sees it only for an instance deleted on a host whose domain is gone there: with the domain still defined its QEMU may hold the disk, and releasing the attachment would hand the volume on while it writes — CVE-2023-2088 — so that case, and an unknown instance's, wait for a person's tether repair)" },
  'leaked-secret': { target: 'leaked-secret', what: "the volume's libvirt secrets are removed on the host (checked again there)" },
  'missing-secret': { target: 'pair', what: "the disk's libvirt secrets are defined again from the BDM's connection info and the key store" },
  'qemu-orphan-disk': { target: 'qemu-orphans', what: "the disk QEMU holds behind libvirt is removed (device_del, then blockdev-del), on the instance's queue after QEMU is asked again there" },
  'duplicate-device': { target: 'report-only', what: 'two live BDMs on one device: only a person can tell which one the guest uses (unique indexes forbid it; no saga makes one)' },
  'duplicate-bdm': { target: 'report-only', what: 'two live BDMs of one volume on one instance: only a person can tell which one is right (unique indexes forbid it; no saga makes one)' },
  'missing-domain': { target: 'report-only', what: "the guest's domain is gone: recreating a guest is a server action (hard reboot, rebuild), not a volume repair" },
  'power-state-mismatch': { target: 'report-only', what: "the domain stopped behind tether's back (QEMU killed, guest powered off): the compute agent's power-state sync records the instance as stopped at its next resync; starting it again is the server's os-start" },
  'stuck-task': { target: 'report-only', what: 'a server action stopped halfway: which half happened is for the action to redo (or an admin reset-state), not for a volume repair' },
};
