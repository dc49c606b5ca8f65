/**
 * From the checker's findings to repair sagas: which saga each finding needs (src/repair/policy.ts),
 * grouped so that one saga repairs everything of one pair. Pure (workflow-safe): `tether repair`
 * and the reconciler's workflow both use it.
 */
import type { Disagreement, DisagreementKind } from '../checker/invariants.ts';
import {
  repairPairWorkflowId,
  repairQemuOrphansWorkflowId,
  repairSecretWorkflowId,
  repairVolumeWorkflowId,
} from '../domain/contracts/repair.ts';
import { REPAIR_BY_KIND, type RepairTargetKind } from './policy.ts';

export type RepairTarget =
  | { kind: 'pair'; instanceUuid: string; volumeId: string; findings: Disagreement[] }
  | { kind: 'volume-status'; volumeId: string; findings: Disagreement[] }
  | { kind: 'qemu-orphans'; instanceUuid: string; findings: Disagreement[] }
  | { kind: 'leaked-secret'; host: string; volumeId: string; findings: Disagreement[] };

export interface RepairSelection {
  targets: RepairTarget[];
  /** Findings no saga repairs (their kind is report only, or the policy says so), with the reason. */
  reportOnly: Array<{ finding: Disagreement; reason: string }>;
}

/**
 * The sagas the findings need. `policy` may make a repairable kind report-only (the reconciler's
 * per-kind policy); `host` is the host whose libvirt the check read (leaked secrets are removed there).
 */
export function selectRepairs(findings: readonly Disagreement[], options: { host?: string; reportOnly?: ReadonlySet<DisagreementKind> } = {}): RepairSelection {
  const byKey = new Map<string, RepairTarget>();
  const reportOnly: RepairSelection['reportOnly'] = [];
  const put = (key: string, make: () => RepairTarget, f: Disagreement) => {
    const t = byKey.get(key) ?? make();
    t.findings.push(f);
    byKey.set(key, t);
  };
  for (const f of findings) {
    let target: RepairTargetKind = REPAIR_BY_KIND[f.kind].target;
    if (target !== 'report-only' && options.reportOnly?.has(f.kind)) {
      reportOnly.push({ finding: f, reason: 'the reconciler policy reports this kind only' });
      continue;
    }
    if (target === 'pair' && (!f.instanceUuid || !f.volumeId)) target = 'report-only';
    if (target === 'leaked-secret' && (!options.host || !f.volumeId)) {
      reportOnly.push({ finding: f, reason: 'the host whose daemon holds the secret is not known (check one host: --host)' });
      continue;
    }
    switch (target) {
      case 'pair':
        put(`pair/${f.instanceUuid}/${f.volumeId}`, () => ({ kind: 'pair', instanceUuid: f.instanceUuid!, volumeId: f.volumeId!, findings: [] }), f);
        break;
      case 'volume-status':
        put(`volume/${f.volumeId}`, () => ({ kind: 'volume-status', volumeId: f.volumeId!, findings: [] }), f);
        break;
      case 'qemu-orphans':
        put(`qemu/${f.instanceUuid}`, () => ({ kind: 'qemu-orphans', instanceUuid: f.instanceUuid!, findings: [] }), f);
        break;
      case 'leaked-secret':
        put(`secret/${options.host}/${f.volumeId}`, () => ({ kind: 'leaked-secret', host: options.host!, volumeId: f.volumeId!, findings: [] }), f);
        break;
      case 'report-only':
        reportOnly.push({ finding: f, reason: REPAIR_BY_KIND[f.kind].what });
        break;
    }
  }
  // A pair's repair also makes its volume's status agree: no separate status repair for that volume.
  const pairVolumes = new Set([...byKey.values()].filter((t) => t.kind === 'pair').map((t) => (t as { volumeId: string }).volumeId));
  const targets = [...byKey.values()].filter((t) => !(t.kind === 'volume-status' && pairVolumes.has(t.volumeId)));
  for (const t of byKey.values()) {
    if (t.kind === 'volume-status' && pairVolumes.has(t.volumeId)) {
      const pairTarget = targets.find((p) => p.kind === 'pair' && p.volumeId === t.volumeId)!;
      pairTarget.findings.push(...t.findings);
    }
  }
  return { targets, reportOnly };
}

export function describeTarget(t: RepairTarget): string {
  switch (t.kind) {
    case 'pair': return `volume ${t.volumeId} on server ${t.instanceUuid}`;
    case 'volume-status': return `status of volume ${t.volumeId}`;
    case 'qemu-orphans': return `QEMU's orphan disks of server ${t.instanceUuid}`;
    case 'leaked-secret': return `secrets of volume ${t.volumeId} on host ${t.host}`;
  }
}

export function repairWorkflowId(t: RepairTarget): string {
  switch (t.kind) {
    case 'pair': return repairPairWorkflowId(t.instanceUuid, t.volumeId);
    case 'volume-status': return repairVolumeWorkflowId(t.volumeId);
    case 'qemu-orphans': return repairQemuOrphansWorkflowId(t.instanceUuid);
    case 'leaked-secret': return repairSecretWorkflowId(t.host, t.volumeId);
  }
}

