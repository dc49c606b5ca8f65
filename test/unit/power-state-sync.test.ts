/**
 * The compute agent's power-state sync (src/host/power-state-sync.ts) against a database that
 * applies its conditional update, and a libvirt that says which domains run: a domain that stopped
 * (QEMU killed) is recorded as stopped; a running one, a missing one, an instance held by a server
 * action and one of another host are left alone; a task that starts between the look and the write wins.
 */
import { describe, expect, it } from 'vitest';
import type { Queryable } from '../../src/db/database.ts';
import type { DomainInfo } from '../../src/libvirt/binding.ts';
import { syncPowerStates } from '../../src/host/power-state-sync.ts';

interface Row { uuid: string; host: string; vm_state: string; task_state: string | null }

/** The two statements the sync sends, applied to rows in memory. */
function fakeDb(rows: Row[], beforeUpdate?: (uuid: string) => void): Queryable {
  const query = async (text: string, values: unknown[]) => {
    if (text.trimStart().startsWith('SELECT')) {
      const [host, states] = values as [string, string[]];
      return { rows: rows.filter((r) => r.host === host && r.task_state === null && states.includes(r.vm_state)).map(({ uuid, vm_state }) => ({ uuid, vm_state })), rowCount: null };
    }
    const [uuid, host, was] = values as [string, string, string];
    beforeUpdate?.(uuid);
    const hit = rows.filter((r) => r.uuid === uuid && r.host === host && r.task_state === null && r.vm_state === was);
    for (const r of hit) r.vm_state = 'stopped';
    return { rows: [], rowCount: hit.length };
  };
  return { query } as unknown as Queryable;
}

function libvirt(domains: Record<string, Pick<DomainInfo, 'state' | 'active'>>) {
  return { lookupDomain: async (uuid: string) => (domains[uuid] ? ({ uuid, name: uuid, persistent: true, ...domains[uuid] } as DomainInfo) : null) };
}

describe('syncPowerStates', () => {
  it('records a domain that stopped running as stopped, and only that one', async () => {
    const rows: Row[] = [
      { uuid: 'killed', host: 'h1', vm_state: 'active', task_state: null },
      { uuid: 'paused-killed', host: 'h1', vm_state: 'paused', task_state: null },
      { uuid: 'running', host: 'h1', vm_state: 'active', task_state: null },
      { uuid: 'no-domain', host: 'h1', vm_state: 'active', task_state: null },
      { uuid: 'stopping', host: 'h1', vm_state: 'active', task_state: 'powering-off' },
      { uuid: 'elsewhere', host: 'h2', vm_state: 'active', task_state: null },
    ];
    const changed = await syncPowerStates({
      db: fakeDb(rows),
      libvirt: libvirt({
        killed: { state: 'shutoff', active: false },
        'paused-killed': { state: 'crashed', active: false },
        running: { state: 'running', active: true },
        stopping: { state: 'shutoff', active: false },
        elsewhere: { state: 'shutoff', active: false },
      }),
      host: 'h1',
    });
    expect(changed).toEqual([
      { uuid: 'killed', was: 'active', domainState: 'shutoff' },
      { uuid: 'paused-killed', was: 'paused', domainState: 'crashed' },
    ]);
    expect(Object.fromEntries(rows.map((r) => [r.uuid, r.vm_state]))).toEqual({
      killed: 'stopped', 'paused-killed': 'stopped', running: 'active', 'no-domain': 'active', stopping: 'active', elsewhere: 'active',
    });
  });

  it('leaves the instance to a server action that took it between the look and the write', async () => {
    const rows: Row[] = [{ uuid: 'raced', host: 'h1', vm_state: 'active', task_state: null }];
    const changed = await syncPowerStates({
      db: fakeDb(rows, () => (rows[0]!.task_state = 'powering-on')),
      libvirt: libvirt({ raced: { state: 'shutoff', active: false } }),
      host: 'h1',
    });
    expect(changed).toEqual([]);
    expect(rows[0]!.vm_state).toBe('active');
  });
});
