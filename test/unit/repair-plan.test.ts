/**
 * The repair planner (src/domain/repair-plan.ts) and the finding → saga selection
 * (src/repair/repairs.ts): every finding kind maps to a saga or to report-only, and each drift an
 * operator can plant gives the plan that undoes it. Pure: no stack.
 */
import { describe, expect, it } from 'vitest';
import { planPairRepair, volumeStatusRepair, type PairSnapshot } from '../../src/domain/repair-plan.ts';
import { DISAGREEMENT_KINDS, type Disagreement } from '../../src/checker/invariants.ts';
import { REPAIR_BY_KIND } from '../../src/repair/policy.ts';
import { selectRepairs } from '../../src/repair/repairs.ts';

const base: PairSnapshot = {
  instanceUuid: 'i-1',
  volumeId: 'v-1',
  instance: { state: 'live', vmState: 'active', host: 'h', taskState: null },
  bdm: { uuid: 'b-1', attachStatus: 'attached', deviceName: '/dev/sdb', diskBus: 'scsi', attachmentId: 'a-1', hasConnectionInfo: true },
  volume: { status: 'in-use', multiattach: false, attachmentStatuses: ['attached'] },
  attachment: { id: 'a-1', status: 'attached' },
  disk: { domain: true, active: true, configTarget: 'sdb', liveTarget: 'sdb', missingSecrets: [] },
};
const kinds = (s: Partial<PairSnapshot>) => planPairRepair({ ...base, ...s }, 'new').actions.map((a) => a.kind);

describe('the repair plan of a pair', () => {
  it('nothing when every store agrees', () => {
    expect(planPairRepair(base, 'new')).toEqual({ actions: [], notes: [] });
  });

  it('virsh detach-device (live, or live and config): the disk is put back', () => {
    expect(kinds({ disk: { ...base.disk!, liveTarget: null } })).toEqual(['restoreDisk']);
    expect(kinds({ disk: { ...base.disk!, liveTarget: null, configTarget: null } })).toEqual(['restoreDisk']);
  });

  it('virsh attach-device of a volume nobody attached: the disk is removed', () => {
    expect(kinds({ bdm: null, attachment: null, volume: { status: 'available', multiattach: false, attachmentStatuses: [] } })).toEqual(['removeDisk']);
  });

  it('the BDM row deleted: recreated from the disk and the attachment, then refreshed', () => {
    const plan = planPairRepair({ ...base, bdm: null }, 'new');
    expect(plan.actions).toEqual([
      { kind: 'recreateBdm', bdmUuid: 'new', device: '/dev/sdb', attachmentId: 'a-1' },
      { kind: 'refreshConnection', bdmUuid: 'new' },
    ]);
  });

  it('the attachment deleted in the block storage: refreshed (the volume then in-use again)', () => {
    expect(kinds({ attachment: null, volume: { status: 'available', multiattach: false, attachmentStatuses: [] } })).toEqual(['refreshConnection']);
  });

  it('an attachment without BDM or disk: deleted (the block storage sets the volume status itself)', () => {
    const plan = planPairRepair({ ...base, bdm: null, disk: { ...base.disk!, configTarget: null, liveTarget: null } }, 'new');
    expect(plan.actions).toEqual([{ kind: 'deleteAttachment', attachmentId: 'a-1' }]);
  });

  it('reset-state of the volume alone: only its status', () => {
    expect(planPairRepair({ ...base, volume: { status: 'available', multiattach: false, attachmentStatuses: ['attached'] } }, 'n').actions)
      .toEqual([{ kind: 'syncVolumeStatus', from: 'available', to: 'in-use' }]);
  });

  it('a BDM of a gone volume retired; a status with no attachment step synced', () => {
    expect(kinds({ bdm: { ...base.bdm!, attachStatus: 'detaching' }, volume: { status: 'detaching', multiattach: false, attachmentStatuses: ['attached'] } })).toEqual(['refreshConnection']);
    expect(kinds({ volume: null, attachment: null })).toEqual(['removeDisk', 'retireBdm']);
  });

  it('a device name changed: the BDM follows the disk', () => {
    expect(planPairRepair({ ...base, bdm: { ...base.bdm!, deviceName: '/dev/sdz' } }, 'n').actions).toEqual([{ kind: 'setDeviceName', bdmUuid: 'b-1', device: '/dev/sdb' }]);
  });

  it('a secret removed: defined again', () => {
    expect(kinds({ disk: { ...base.disk!, missingSecrets: ['s-1'] } })).toEqual(['defineSecrets']);
  });

  it('a stuck BDM: completed with its disk, finished backwards without', () => {
    expect(kinds({ bdm: { ...base.bdm!, attachStatus: 'attaching' }, attachment: { id: 'a-1', status: 'attaching' } })).toEqual(['refreshConnection']);
    expect(kinds({ bdm: { ...base.bdm!, attachStatus: 'detaching' }, disk: { ...base.disk!, configTarget: null, liveTarget: null } })).toEqual(['deleteAttachment', 'retireBdm']);
  });

  it('a deleted instance: BDM retired, attachment deleted, host not needed', () => {
    expect(kinds({ instance: { state: 'deleted', vmState: 'deleted', host: 'h', taskState: null }, disk: null })).toEqual(['deleteAttachment', 'retireBdm']);
  });

  it('a server action holds the instance: nothing, with the reason', () => {
    const plan = planPairRepair({ ...base, instance: { ...base.instance, taskState: 'shelving' }, disk: null }, 'n');
    expect(plan.actions).toEqual([]);
    expect(plan.notes[0]).toMatch(/task_state shelving/);
  });

  it('the volume status rule leaves statuses outside the attach flow alone', () => {
    expect(volumeStatusRepair({ status: 'error', attachmentStatuses: [] })).toBeNull();
    expect(volumeStatusRepair({ status: 'detaching', attachmentStatuses: ['attached'] })).toBe('in-use');
    expect(volumeStatusRepair({ status: 'reserved', attachmentStatuses: [] })).toBe('available');
  });
});

describe('findings to repair sagas', () => {
  it('every finding kind is mapped, to a saga or to report-only with a reason', () => {
    for (const kind of DISAGREEMENT_KINDS) expect(REPAIR_BY_KIND[kind]?.what.length, kind).toBeGreaterThan(10);
  });

  it('one saga per pair; a volume status folded into its pair; report-only kinds reported', () => {
    const f = (kind: Disagreement['kind'], over: Partial<Disagreement> = {}): Disagreement => ({ kind, detail: 'x', ...over });
    const { targets, reportOnly } = selectRepairs([
      f('bdm-without-disk', { instanceUuid: 'i', volumeId: 'v' }),
      f('bdm-without-attachment', { instanceUuid: 'i', volumeId: 'v' }),
      f('volume-status-mismatch', { volumeId: 'v' }),
      f('stuck-volume', { volumeId: 'w' }),
      f('leaked-secret', { volumeId: 'x' }),
      f('missing-domain', { instanceUuid: 'j' }),
    ], { host: 'h' });
    expect(targets.map((t) => [t.kind, t.findings.length])).toEqual([['pair', 3], ['volume-status', 1], ['leaked-secret', 1]]);
    expect(reportOnly.map((r) => r.finding.kind)).toEqual(['missing-domain']);
  });

  it('a policy that reports a kind only starts nothing for it', () => {
    const { targets, reportOnly } = selectRepairs([{ kind: 'disk-without-bdm', instanceUuid: 'i', volumeId: 'v', detail: 'x' }], { reportOnly: new Set(['disk-without-bdm']) });
    expect(targets).toEqual([]);
    expect(reportOnly).toHaveLength(1);
  });
});
