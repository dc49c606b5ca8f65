/**
 * The server API's rules without a stack: Nova's state checks and wording for each action, the action
 * bodies per microversion, POST /servers bodies, the flavor table and its list filters and views.
 */
import { describe, expect, it } from 'vitest';
import { ACTION_RULES, rebootRule, serverActionRefusal } from '../../src/domain/server-action-rules.ts';
import { parseServerAction } from '../../src/api/routes/server-actions.ts';
import { parseCreateServer } from '../../src/api/routes/server-create.ts';
import { selectFlavors } from '../../src/api/routes/flavors.ts';
import { flavorDetail, flavorBrief } from '../../src/api/views/flavor.ts';
import { FLAVORS, findFlavor } from '../../src/domain/flavors.ts';
import type { VmState } from '../../src/domain/types.ts';

const UUID = '11111111-2222-3333-4444-555555555555';
const server = (vmState: VmState, taskState: string | null = null, extra: { host?: string | null; locked?: boolean } = {}) => ({
  uuid: UUID,
  vmState,
  taskState,
  host: 'h1',
  locked: false,
  ...extra,
});

describe("Nova's state checks", () => {
  it('words refusals as the compute API does', () => {
    expect(serverActionRefusal(server('stopped'), 'stop')).toEqual({ type: 'InstanceInvalidState', message: `Cannot 'stop' instance ${UUID} while it is in vm_state stopped` });
    expect(serverActionRefusal(server('active'), 'start')?.message).toBe(`Cannot 'start' instance ${UUID} while it is in vm_state active`);
    expect(serverActionRefusal(server('active', 'powering-off'), 'stop')?.message).toBe(`Cannot 'stop' instance ${UUID} while it is in task_state powering-off`);
    expect(serverActionRefusal(server('active'), 'shelveOffload')?.message).toBe(`Cannot 'shelveOffload' instance ${UUID} while it is in vm_state active`);
    expect(serverActionRefusal(server('active', null, { locked: true }), 'stop')).toEqual({ type: 'InstanceLocked', message: `Instance ${UUID} is locked` });
    expect(serverActionRefusal(server('stopped', null, { host: null }), 'start')).toEqual({ type: 'InstanceNotReady', message: `Instance ${UUID} is not ready` });
  });

  it('allows what Nova allows', () => {
    expect(serverActionRefusal(server('active'), 'stop')).toBeNull();
    expect(serverActionRefusal(server('error'), 'stop')).toBeNull();
    expect(serverActionRefusal(server('stopped'), 'start')).toBeNull();
    expect(serverActionRefusal(server('stopped'), 'shelve')).toBeNull();
    expect(serverActionRefusal(server('shelved_offloaded', null, { host: null }), 'unshelve')).toBeNull();
    expect(serverActionRefusal(server('error'), 'delete')).toBeNull();
    // a soft reboot needs a running server, a hard one does not
    expect(serverActionRefusal(server('stopped'), 'reboot', rebootRule('SOFT'))?.message).toMatch(/vm_state stopped/);
    expect(serverActionRefusal(server('stopped'), 'reboot', rebootRule('HARD'))).toBeNull();
    expect(rebootRule('HARD').task).toBe('rebooting_hard');
    expect(ACTION_RULES.stop.task).toBe('powering-off');
  });
});

describe('action bodies', () => {
  it('parses each action and its microversion rules', () => {
    expect(parseServerAction({ 'os-stop': null }, 1)).toEqual({ action: 'stop' });
    expect(parseServerAction({ 'os-start': null }, 1)).toEqual({ action: 'start' });
    expect(parseServerAction({ reboot: { type: 'hard' } }, 1)).toEqual({ action: 'reboot', type: 'HARD' });
    expect(parseServerAction({ shelveOffload: null }, 1)).toEqual({ action: 'shelveOffload' });
    expect(parseServerAction({ unshelve: { host: 'h2' } }, 91)).toEqual({ action: 'unshelve', host: 'h2' });
    expect(parseServerAction({ unshelve: { host: 'h2' } }, 60)).toEqual({ action: 'unshelve' });
    expect(parseServerAction({ migrate: { host: 'h2' } }, 56)).toEqual({ action: 'migrate', host: 'h2' });
    expect(parseServerAction({ migrate: null }, 56)).toEqual({ action: 'migrate' });
  });

  it('refuses what Nova refuses', () => {
    expect(() => parseServerAction({ reboot: { type: 'warm' } }, 1)).toThrow(/is not one of/);
    expect(() => parseServerAction({ reboot: {} }, 1)).toThrow(/'type' is a required property/);
    expect(() => parseServerAction({ fly: null }, 1)).toThrow('There is no such action: fly');
    expect(() => parseServerAction({ unshelve: { host: 'h2' } }, 80)).toThrow(/'host' was unexpected/);
    expect(() => parseServerAction({ migrate: { host: 'h2', x: 1 } }, 60)).toThrow(/'x' was unexpected/);
  });
});

describe('POST /servers bodies', () => {
  const bfv = { uuid: UUID, source_type: 'volume', destination_type: 'volume', boot_index: 0, delete_on_termination: true };

  it('takes a boot volume, networks none, imageRef "", a flavor link', () => {
    const { request } = parseCreateServer({ server: { name: 'vm', imageRef: '', flavorRef: 'http://x/v2.1/flavors/tether.small', networks: 'none', block_device_mapping_v2: [bfv] } }, 89);
    expect(request).toEqual({ name: 'vm', flavorRef: 'tether.small', volumes: [{ volumeId: UUID, bootIndex: 0, deleteOnTermination: true }] });
    expect(parseCreateServer({ server: { name: 'vm', flavorRef: 'tether.tiny', networks: 'auto' } }, 100).request.volumes).toEqual([]);
  });

  it('refuses what tether cannot or Nova would not take', () => {
    expect(() => parseCreateServer({ server: { name: 'vm', networks: 'none' } }, 89)).toThrow(/'flavorRef' is a required property/);
    expect(() => parseCreateServer({ server: { name: 'vm', flavorRef: 'tether.tiny' } }, 89)).toThrow(/'networks' is a required property/);
    expect(() => parseCreateServer({ server: { name: 'vm', flavorRef: 'tether.tiny', networks: [{ uuid: UUID }] } }, 89)).toThrow(/no network service/);
    expect(() => parseCreateServer({ server: { name: 'vm', flavorRef: 'tether.tiny', networks: 'none', imageRef: UUID } }, 89)).toThrow(/could not be found/);
    expect(() => parseCreateServer({ server: { name: 'vm', flavorRef: 'tether.tiny', networks: 'none', block_device_mapping_v2: [{ ...bfv, source_type: 'image' }] } }, 89)).toThrow(/existing volumes only/);
    expect(() => parseCreateServer({ server: { name: 'vm', flavorRef: 'tether.tiny', networks: 'none', hostname: 'x' } }, 89)).toThrow(/'hostname' was unexpected/);
    expect(() => parseCreateServer({ server: { name: ' vm', flavorRef: 'tether.tiny', networks: 'none' } }, 89)).toThrow(/not a valid name/);
  });
});

describe('flavors', () => {
  it('filters, sorts and pages like Nova', () => {
    expect(selectFlavors({}, 1).map((f) => f.id)).toEqual(['tether.medium', 'tether.small', 'tether.tiny']);
    expect(selectFlavors({ minRam: '128', sort_key: 'memory_mb' }, 1).map((f) => f.id)).toEqual(['tether.small', 'tether.medium']);
    expect(selectFlavors({ marker: 'tether.medium', limit: '1' }, 1).map((f) => f.id)).toEqual(['tether.small']);
    expect(selectFlavors({ name: 'tether.tiny' }, 102).map((f) => f.id)).toEqual(['tether.tiny']);
    expect(() => selectFlavors({ name: 'tether.tiny' }, 75)).toThrow(/'name' was unexpected/);
    expect(() => selectFlavors({ minRam: 'x' }, 1)).toThrow('Invalid minRam filter [x]');
    expect(() => selectFlavors({ marker: 'nope' }, 1)).toThrow('marker [nope] not found');
  });

  it('shows the fields of each microversion', () => {
    const tiny = findFlavor('tether.tiny')!;
    expect(flavorDetail(tiny, 'http://h', null, 1)).toMatchObject({ swap: '', 'OS-FLV-DISABLED:disabled': false, rxtx_factor: 1, ram: 64, vcpus: 1, disk: 0 });
    const v102 = flavorDetail(tiny, 'http://h', null, 102);
    expect(v102).toMatchObject({ swap: 0, description: expect.any(String), extra_specs: {} });
    expect(v102).not.toHaveProperty('rxtx_factor');
    expect(v102).not.toHaveProperty('OS-FLV-DISABLED:disabled');
    expect(flavorBrief(tiny, 'http://h', 'p1', 55).links[0]!.href).toBe('http://h/v2.1/p1/flavors/tether.tiny');
    expect(FLAVORS.every((f) => f.disk === 0)).toBe(true);
  });
});
