/**
 * The request sequences of the differential test (test/nova-differential.test.ts), run on Nova and
 * on tether alike (test/support/differential.ts), and the short list of intended differences.
 *
 * Groups run in the order of scenarioGroups(): attach and detach, list and show, refusals, the 2.85
 * update of an attachment (PUT os-volume_attachments/{volume_id}) and instance actions
 * (os-instance-actions); a group is a name and scenarios, each scenario a function of a Side that
 * returns its observations.
 */
import { randomUUID } from 'node:crypto';
import {
  createVolume,
  deleteVolume,
  observe,
  volumeStatus,
  waitAttached,
  waitDetached,
  type AllowedDifference,
  type Observation,
  type Scenario,
  type ScenarioGroup,
  type Shared,
  type Side,
} from './differential.ts';

/** The microversions both serve: 2.1 … 2.N with N the lower of the two maxima. */
export function commonMicroversions(...maxima: string[]): string[] {
  const top = Math.min(...maxima.map((m) => Number(m.split('.')[1])));
  return Array.from({ length: top }, (_, i) => `2.${i + 1}`);
}

const attachmentsOf = (serverId: string) => `/servers/${serverId}/os-volume_attachments`;

/** Fails the scenario (on that side) when a refused request changed the volume. */
async function expectUnchanged(shared: Shared, side: Side, volumeId: string, status: string, what: string): Promise<void> {
  const now = await volumeStatus(shared, volumeId);
  if (now !== status) throw new Error(`${side.name}: ${what} changed volume ${volumeId} from ${status} to ${now}`);
}

/**
 * Attach with a request body, then show and detach at the same microversion; each answer observed.
 * The volume is new and deleted at the end.
 */
function attachCycle(name: string, microversion: string, body: (volumeId: string) => Record<string, unknown>): Scenario {
  return {
    name,
    async run(side, shared) {
      const out: Observation[] = [];
      const volumeId = await createVolume(shared, `diff-${side.name}-${name}`.slice(0, 60));
      try {
        const posted = await side.request('POST', attachmentsOf(side.serverId), { microversion, body: { volumeAttachment: body(volumeId) } });
        out.push(observe('POST attach', posted));
        if (posted.status !== 200) return out;
        await waitAttached(shared, side, side.serverId, volumeId);
        out.push(observe('GET attachment', await side.request('GET', `${attachmentsOf(side.serverId)}/${volumeId}`, { microversion })));
        out.push(observe('DELETE attachment', await side.request('DELETE', `${attachmentsOf(side.serverId)}/${volumeId}`, { microversion })));
        await waitDetached(shared, side, side.serverId, volumeId);
        return out;
      } finally {
        await deleteVolume(shared, volumeId);
      }
    },
  };
}

const attach: ScenarioGroup = {
  name: 'attach and detach',
  scenarios: [
    attachCycle('no device, 2.1', '2.1', (volumeId) => ({ volumeId })),
    attachCycle('with device, 2.1', '2.1', (volumeId) => ({ volumeId, device: '/dev/sdc' })),
    attachCycle('with tag, 2.49', '2.49', (volumeId) => ({ volumeId, tag: 'diff-tag' })),
    attachCycle('with device and tag, 2.70', '2.70', (volumeId) => ({ volumeId, device: '/dev/sdd', tag: 'diff-tag' })),
    attachCycle('delete_on_termination, 2.79', '2.79', (volumeId) => ({ volumeId, delete_on_termination: true })),
    attachCycle('device null and tag, 2.89', '2.89', (volumeId) => ({ volumeId, device: null, tag: 'diff-tag' })),
  ],
};

/** One attachment (tagged, 2.79), then list and show at every microversion both serve. */
function listAndShow(microversions: () => string[]): ScenarioGroup {
  return {
    name: 'list and show',
    scenarios: [
      {
        name: 'list and show at every common microversion',
        async run(side, shared) {
          const out: Observation[] = [];
          const volumeId = await createVolume(shared, `diff-${side.name}-listed`);
          try {
            const posted = await side.request('POST', attachmentsOf(side.serverId), { microversion: '2.79', body: { volumeAttachment: { volumeId, tag: 'listed', delete_on_termination: false } } });
            out.push(observe('POST attach', posted));
            if (posted.status !== 200) return out;
            await waitAttached(shared, side, side.serverId, volumeId);
            for (const v of microversions()) {
              out.push(observe(`GET list ${v}`, await side.request('GET', attachmentsOf(side.serverId), { microversion: v })));
              out.push(observe(`GET show ${v}`, await side.request('GET', `${attachmentsOf(side.serverId)}/${volumeId}`, { microversion: v })));
            }
            out.push(observe('GET list, no microversion', await side.request('GET', attachmentsOf(side.serverId))));
            out.push(observe('GET list, legacy header 2.79', await side.request('GET', attachmentsOf(side.serverId), { headers: { 'X-OpenStack-Nova-API-Version': '2.79' } })));
            out.push(observe('DELETE attachment', await side.request('DELETE', `${attachmentsOf(side.serverId)}/${volumeId}`, { microversion: '2.89' })));
            await waitDetached(shared, side, side.serverId, volumeId);
            return out;
          } finally {
            await deleteVolume(shared, volumeId);
          }
        },
      },
    ],
  };
}

/** One available volume per side for the refusals (a refused request leaves it available). */
const refusalVolumes = new Map<string, Promise<string>>();

/** A request that must be refused and change nothing: the side's refusal volume is available before and after. */
function refusal(name: string, request: (side: Side, volumeId: string) => { method: string; path: string; o?: Parameters<Side['request']>[2] }): Scenario {
  return {
    name,
    async run(side, shared) {
      let volume = refusalVolumes.get(side.name);
      if (!volume) refusalVolumes.set(side.name, (volume = createVolume(shared, `diff-${side.name}-refused`)));
      const volumeId = await volume;
      await expectUnchanged(shared, side, volumeId, 'available', 'an earlier scenario');
      const r = request(side, volumeId);
      const answer = await side.request(r.method, r.path, r.o);
      if (answer.status < 400 && r.method === 'POST') {
        // accepted: put things back, so that later scenarios start clean (the comparison reports the 2xx)
        await waitAttached(shared, side, r.path.split('/')[2]!, volumeId).catch(() => undefined);
        await side.request('DELETE', `${r.path}/${volumeId}`);
        await waitDetached(shared, side, r.path.split('/')[2]!, volumeId).catch(() => undefined);
      } else {
        await expectUnchanged(shared, side, volumeId, 'available', name);
      }
      return [observe(r.method, answer)];
    },
  };
}

const post = (side: Side, body: unknown, microversion = '2.89', o: { server?: string; rawBody?: string; headers?: Record<string, string> } = {}) => ({
  method: 'POST',
  path: attachmentsOf(o.server ?? side.serverId),
  o: { body, microversion, ...(o.rawBody !== undefined ? { rawBody: o.rawBody, body: undefined } : {}), ...(o.headers ? { headers: o.headers } : {}) },
});

const refusals: ScenarioGroup = {
  name: 'refusals',
  scenarios: [
    refusal('attach: unknown volume', (side) => post(side, { volumeAttachment: { volumeId: randomUUID() } })),
    refusal('attach: unknown server', (side, v) => post(side, { volumeAttachment: { volumeId: v } }, '2.89', { server: randomUUID() })),
    {
      name: 'attach: a volume in-use by a server of the other side',
      async run(side, shared) {
        const answer = await side.request('POST', attachmentsOf(side.serverId), { microversion: '2.89', body: { volumeAttachment: { volumeId: side.volumeInUseElsewhere } } });
        await expectUnchanged(shared, side, side.volumeInUseElsewhere, 'in-use', 'attaching a volume in-use elsewhere');
        return [observe('POST', answer)];
      },
    },
    {
      name: 'attach: a volume already attached to this server',
      async run(side, shared) {
        const volumeId = await createVolume(shared, `diff-${side.name}-twice`);
        try {
          const out = [observe('POST first', await side.request('POST', attachmentsOf(side.serverId), { microversion: '2.89', body: { volumeAttachment: { volumeId } } }))];
          await waitAttached(shared, side, side.serverId, volumeId);
          out.push(observe('POST again', await side.request('POST', attachmentsOf(side.serverId), { microversion: '2.89', body: { volumeAttachment: { volumeId } } })));
          await expectUnchanged(shared, side, volumeId, 'in-use', 'attaching twice');
          out.push(observe('DELETE', await side.request('DELETE', `${attachmentsOf(side.serverId)}/${volumeId}`, { microversion: '2.89' })));
          await waitDetached(shared, side, side.serverId, volumeId);
          return out;
        } finally {
          await deleteVolume(shared, volumeId);
        }
      },
    },
    refusal('attach: shelved_offloaded server below 2.20', (side, v) => post(side, { volumeAttachment: { volumeId: v } }, '2.19', { server: side.shelvedServerId })),
    refusal('attach: shelved_offloaded server with a tag', (side, v) => post(side, { volumeAttachment: { volumeId: v, tag: 'no' } }, '2.89', { server: side.shelvedServerId })),
    refusal('bad body: no volumeAttachment', (side) => post(side, {})),
    refusal('bad body: no volumeId', (side) => post(side, { volumeAttachment: { device: '/dev/sdb' } })),
    refusal('bad body: volumeId not a UUID', (side) => post(side, { volumeAttachment: { volumeId: 'not-a-uuid' } })),
    refusal('bad body: device not a device path', (side, v) => post(side, { volumeAttachment: { volumeId: v, device: 'sdb' } })),
    refusal('bad body: unknown property', (side, v) => post(side, { volumeAttachment: { volumeId: v, color: 'blue' } })),
    refusal('bad body: tag below 2.49', (side, v) => post(side, { volumeAttachment: { volumeId: v, tag: 'early' } }, '2.48')),
    refusal('bad body: delete_on_termination below 2.79', (side, v) => post(side, { volumeAttachment: { volumeId: v, delete_on_termination: true } }, '2.78')),
    refusal('bad body: tag of 61 characters', (side, v) => post(side, { volumeAttachment: { volumeId: v, tag: 'x'.repeat(61) } })),
    refusal('bad body: tag with a slash', (side, v) => post(side, { volumeAttachment: { volumeId: v, tag: 'a/b' } })),
    refusal('bad body: not JSON', (side) => post(side, undefined, '2.89', { rawBody: '{"volumeAttachment": ' })),
    refusal('bad microversion: 2.200', (side, v) => post(side, { volumeAttachment: { volumeId: v } }, '2.200')),
    refusal('bad microversion: 3.1', (side, v) => post(side, { volumeAttachment: { volumeId: v } }, '3.1')),
    refusal('bad microversion: malformed', (side, v) => post(side, { volumeAttachment: { volumeId: v } }, 'two.one')),
    refusal('bad microversion: legacy header 2.200', (side, v) => ({ method: 'POST', path: attachmentsOf(side.serverId), o: { body: { volumeAttachment: { volumeId: v } }, headers: { 'X-OpenStack-Nova-API-Version': '2.200' } } })),
    refusal('detach: volume not attached', (side, v) => ({ method: 'DELETE', path: `${attachmentsOf(side.serverId)}/${v}`, o: { microversion: '2.89' } })),
    refusal('detach: unknown volume', (side) => ({ method: 'DELETE', path: `${attachmentsOf(side.serverId)}/${randomUUID()}`, o: { microversion: '2.89' } })),
    refusal('detach: unknown server', (side, v) => ({ method: 'DELETE', path: `${attachmentsOf(randomUUID())}/${v}`, o: { microversion: '2.89' } })),
    refusal('show: volume not attached', (side, v) => ({ method: 'GET', path: `${attachmentsOf(side.serverId)}/${v}`, o: { microversion: '2.89' } })),
    refusal('list: unknown server', (side) => ({ method: 'GET', path: attachmentsOf(randomUUID()), o: { microversion: '2.89' } })),
  ],
};

/** PUT os-volume_attachments/{volume_id} (2.85): delete_on_termination changed, then what is refused. */
const update: ScenarioGroup = {
  name: 'update (2.85)',
  scenarios: [
    {
      name: 'delete_on_termination changed, other fields refused, below 2.85 refused',
      async run(side, shared) {
        const out: Observation[] = [];
        const volumeId = await createVolume(shared, `diff-${side.name}-updated`);
        const one = `${attachmentsOf(side.serverId)}/${volumeId}`;
        try {
          const posted = await side.request('POST', attachmentsOf(side.serverId), { microversion: '2.79', body: { volumeAttachment: { volumeId, delete_on_termination: false } } });
          out.push(observe('POST attach', posted));
          if (posted.status !== 200) return out;
          await waitAttached(shared, side, side.serverId, volumeId);
          out.push(observe('PUT delete_on_termination true', await side.request('PUT', one, { microversion: '2.85', body: { volumeAttachment: { volumeId, delete_on_termination: true } } })));
          out.push(observe('GET after update', await side.request('GET', one, { microversion: '2.89' })));
          out.push(observe('PUT the same again', await side.request('PUT', one, { microversion: '2.85', body: { volumeAttachment: { volumeId, delete_on_termination: true } } })));
          out.push(observe('PUT a device change', await side.request('PUT', one, { microversion: '2.85', body: { volumeAttachment: { volumeId, device: '/dev/sdz' } } })));
          out.push(observe('PUT an unknown property', await side.request('PUT', one, { microversion: '2.85', body: { volumeAttachment: { volumeId, color: 'blue' } } })));
          out.push(observe('PUT delete_on_termination at 2.84', await side.request('PUT', one, { microversion: '2.84', body: { volumeAttachment: { volumeId, delete_on_termination: false } } })));
          out.push(observe('PUT a volume not attached', await side.request('PUT', `${attachmentsOf(side.serverId)}/${randomUUID()}`, { microversion: '2.85', body: { volumeAttachment: { volumeId, delete_on_termination: false } } })));
          out.push(observe('DELETE attachment', await side.request('DELETE', one, { microversion: '2.89' })));
          await waitDetached(shared, side, side.serverId, volumeId);
          return out;
        } finally {
          await deleteVolume(shared, volumeId);
        }
      },
    },
  ],
};

const actionsOf = (serverId: string) => `/servers/${serverId}/os-instance-actions`;

/** The microversions that change what os-instance-actions answers. */
const ACTION_MICROVERSIONS = ['2.1', '2.21', '2.51', '2.58', '2.62', '2.66', '2.84'];

/** An attach and a detach, then their actions listed and shown at each microversion that changes them, paged, filtered and refused. */
const instanceActions: ScenarioGroup = {
  name: 'instance actions',
  scenarios: [
    {
      name: 'an attach and a detach as actions',
      async run(side, shared) {
        const out: Observation[] = [];
        const volumeId = await createVolume(shared, `diff-${side.name}-actions`);
        try {
          const posted = await side.request('POST', attachmentsOf(side.serverId), { microversion: '2.89', body: { volumeAttachment: { volumeId } } });
          out.push(observe('POST attach', posted));
          if (posted.status !== 200) return out;
          const attachRequest = posted.headers.get('x-openstack-request-id') ?? 'none';
          await waitAttached(shared, side, side.serverId, volumeId);
          out.push(observe('DELETE attachment', await side.request('DELETE', `${attachmentsOf(side.serverId)}/${volumeId}`, { microversion: '2.89' })));
          await waitDetached(shared, side, side.serverId, volumeId);
          const list = actionsOf(side.serverId);
          for (const v of ACTION_MICROVERSIONS) {
            out.push(observe(`GET list ${v}`, await side.request('GET', list, { microversion: v })));
            out.push(observe(`GET show attach ${v}`, await side.request('GET', `${list}/${attachRequest}`, { microversion: v })));
          }
          out.push(observe('GET show unknown request id', await side.request('GET', `${list}/req-${randomUUID()}`, { microversion: '2.84' })));
          out.push(observe('GET list unknown server', await side.request('GET', actionsOf(randomUUID()), { microversion: '2.84' })));
          out.push(observe('GET list limit=1', await side.request('GET', `${list}?limit=1`, { microversion: '2.84' })));
          out.push(observe('GET list changes-since', await side.request('GET', `${list}?changes-since=2000-01-01T00:00:00Z`, { microversion: '2.84' })));
          out.push(observe('GET list unknown marker', await side.request('GET', `${list}?marker=req-${randomUUID()}`, { microversion: '2.84' })));
          out.push(observe('GET list negative limit', await side.request('GET', `${list}?limit=-1`, { microversion: '2.84' })));
          out.push(observe('GET list changes-before at 2.65', await side.request('GET', `${list}?changes-before=2000-01-01T00:00:00Z`, { microversion: '2.65' })));
          out.push(observe('GET list changes-before earlier than changes-since', await side.request('GET', `${list}?changes-since=2001-01-01T00:00:00Z&changes-before=2000-01-01T00:00:00Z`, { microversion: '2.66' })));
          out.push(observe('GET list unknown query parameter', await side.request('GET', `${list}?sort_key=x`, { microversion: '2.84' })));
          return out;
        } finally {
          await deleteVolume(shared, volumeId);
        }
      },
    },
  ],
};

/** Every group, in the order they run. */
export function scenarioGroups(o: { commonMicroversions: () => string[] }): ScenarioGroup[] {
  return [attach, listAndShow(o.commonMicroversions), refusals, update, instanceActions];
}

/**
 * Intended differences, each with its reason. Keep it short: an entry that no difference needs
 * fails the test, so the list never outlives what it explains.
 */
export const ALLOWED_DIFFERENCES: AllowedDifference[] = [
  {
    scenario: /^refusals: bad microversion: (2\.200|3\.1|legacy header 2\.200)$/,
    path: 'version',
    reason:
      "on a 406 Nova's fault wrapper echoes the version it refused (OpenStack-API-Version: compute 2.200); tether echoes only a version it serves, so its 406 has none. The status and the error body agree; clients read the body",
  },
];
