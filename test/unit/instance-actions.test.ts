/**
 * Instance actions without a stack: a run's history and a saga's steps read as Nova's events (names,
 * times, results, the reason of a failure, compensations named as rollbacks), and the fields each
 * microversion and role shows.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { eventsOfHistory, eventsOfSteps, actionStart } from '../../src/service/instance-actions.ts';
import { actionOfWorkflow, eventOfStep } from '../../src/domain/instance-actions.ts';
import { actionEventView, eventVisibility, hostIdOf, instanceActionView } from '../../src/api/views/instance-action.ts';
import type { StepProgress } from '../../src/domain/steps.ts';

const history = (name: string) => historyFromJSON(JSON.parse(readFileSync(new URL(`../histories/${name}.json`, import.meta.url), 'utf8')));

describe('names', () => {
  it("workflow types are Nova's action names", () => {
    expect(['attachVolume', 'detachVolume', 'forceDetachVolume', 'extendVolume', 'shelveOffloadServer', 'deleteServer', 'createServer'].map(actionOfWorkflow)).toEqual([
      'attach_volume',
      'detach_volume',
      'detach_volume',
      'extend_volume',
      'shelveOffload',
      'delete',
      'create',
    ]);
  });

  it("steps are Nova's event names where Nova has one, compute_<step> otherwise, rollbacks named as such", () => {
    expect(eventOfStep('attachDisk')).toBe('compute_attach_volume');
    expect(eventOfStep('reserveDeviceName')).toBe('compute_reserve_block_device_name');
    expect(eventOfStep('validateDetach')).toBe('compute_validate_detach');
    expect(eventOfStep('reattachDisk', true)).toBe('compute_rollback_reattach_disk');
  });
});

describe('events from a recorded history', () => {
  it('a detach rolled back: the failed host step with its reason, then the rollback steps', () => {
    const events = eventsOfHistory(history('detach-rolled-back'), 'host-1');
    const names = events.map((e) => e.event);
    expect(names.slice(0, 2)).toEqual(['compute_is_earlier_operation_running', 'compute_validate_detach']);
    const failed = events.find((e) => e.result === 'Error')!;
    expect(failed).toMatchObject({ event: 'compute_detach_volume', details: 'Injected fault after step detachDisk', host: 'host-1' });
    expect(Date.parse(failed.finishTime!)).toBeGreaterThanOrEqual(Date.parse(failed.startTime));
    // after it: the disk put back and the volume rolled back to in-use, each a success
    const after = events.slice(events.indexOf(failed) + 1);
    expect(after.map((e) => e.event)).toEqual(['compute_attach_volume', 'compute_roll_detaching', 'compute_set_bdm_attach_status']);
    expect(after.every((e) => e.result === 'Success' && e.details === null)).toBe(true);
  });

  it('an attach that succeeded: every step a success, local activities with their own times', () => {
    const events = eventsOfHistory(history('attach-succeeded'), null);
    expect(events.length).toBeGreaterThan(5);
    expect(events.every((e) => e.result === 'Success' && e.finishTime !== null)).toBe(true);
    expect(events.map((e) => e.event)).toContain('compute_attach_volume');
    expect(events.map((e) => e.event)).toContain('compute_reserve_block_device_name');
  });
});

describe('events from a saga', () => {
  const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  const steps: StepProgress[] = [
    { step: 'validateDetach', description: '', status: 'completed', startedAt: t(0), endedAt: t(1) },
    { step: 'detachDisk', description: '', status: 'failed', startedAt: t(1), endedAt: t(5), error: 'The guest did not release disk vdb of volume v after 3 unplug requests' },
    { step: 'reattachDisk', description: '', status: 'compensated', startedAt: t(5), endedAt: t(6) },
    { step: 'rollDetaching', description: '', status: 'running', startedAt: t(6) },
  ];

  it('the failed step says why; compensations are rollbacks; a running step has no finish and no result', () => {
    expect(eventsOfSteps(steps, 'h')).toEqual([
      { event: 'compute_validate_detach', startTime: t(0), finishTime: t(1), result: 'Success', details: null, host: 'h' },
      { event: 'compute_detach_volume', startTime: t(1), finishTime: t(5), result: 'Error', details: steps[1]!.error, host: 'h' },
      { event: 'compute_rollback_reattach_disk', startTime: t(5), finishTime: t(6), result: 'Success', details: null, host: 'h' },
      { event: 'compute_rollback_roll_detaching', startTime: t(6), finishTime: null, result: null, details: null, host: 'h' },
    ]);
  });
});

describe('views per microversion', () => {
  const action = {
    action: 'detach_volume',
    instanceUuid: 'i',
    requestId: 'req-1',
    userId: 'u',
    projectId: 'p',
    startTime: '2026-01-01T00:00:00.123Z',
    updatedAt: '2026-01-01T00:00:09.000Z',
    message: 'Error',
    workflowId: 'w',
    runId: 'r',
    workflowType: 'detachVolume',
    status: 'FAILED',
    host: 'h',
  };
  const event = { event: 'compute_detach_volume', startTime: action.startTime, finishTime: action.updatedAt, result: 'Error' as const, details: 'why', host: 'h' };

  it("Nova's timestamps (microseconds, no zone); updated_at from 2.58", () => {
    expect(instanceActionView(action, 57)).not.toHaveProperty('updated_at');
    expect(instanceActionView(action, 58)).toMatchObject({ start_time: '2026-01-01T00:00:00.123000', updated_at: '2026-01-01T00:00:09.000000', message: 'Error' });
  });

  it('events: admins always (with traceback), others from 2.51; host for admins and hostId for all from 2.62; details from 2.84', () => {
    expect(eventVisibility(50, { events: false, details: true })).toBeNull();
    expect(Object.keys(actionEventView(event, 'p', eventVisibility(50, { events: true, details: true })!)).sort()).toEqual(['event', 'finish_time', 'result', 'start_time', 'traceback']);
    expect(Object.keys(actionEventView(event, 'p', eventVisibility(51, { events: false, details: true })!)).sort()).toEqual(['event', 'finish_time', 'result', 'start_time']);
    expect(Object.keys(actionEventView(event, 'p', eventVisibility(62, { events: false, details: true })!)).sort()).toEqual(['event', 'finish_time', 'hostId', 'result', 'start_time']);
    expect(actionEventView(event, 'p', eventVisibility(84, { events: true, details: true })!)).toEqual({
      event: 'compute_detach_volume',
      start_time: '2026-01-01T00:00:00.123000',
      finish_time: '2026-01-01T00:00:09.000000',
      result: 'Error',
      traceback: 'why',
      host: 'h',
      hostId: hostIdOf('h', 'p'),
      details: 'why',
    });
  });

  it("hostId is Nova's sha224 of project id and host, empty without a host", () => {
    expect(hostIdOf('compute1', 'proj')).toBe('c5adeef211cb74f89bacc6ab11225f082843f83ae6eb60c9441016ce');
    expect(hostIdOf(null, 'proj')).toBe('');
  });
});

describe('start options', () => {
  it('the memo carries the request id and who asked; the summary reads without ids; the details carry them', () => {
    const o = actionStart({ userId: 'u1', userName: 'alice', projectId: 'p1', projectName: 'alpha', roles: ['member'] }, 'req-x', 'attach volume data to server web', {
      server: 'uuid-s',
      volume: 'uuid-v',
      device: null,
    });
    expect(o.memo).toEqual({ requestId: 'req-x', userId: 'u1', projectId: 'p1' });
    expect(o.staticSummary).toBe('attach volume data to server web');
    expect(o.staticDetails).toBe('request: req-x\nasked by: alice (user u1, project p1)\nserver: uuid-s\nvolume: uuid-v');
  });
});
