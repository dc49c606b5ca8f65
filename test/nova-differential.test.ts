/**
 * Nova and tether, side by side: the same requests (test/support/differential-scenarios.ts) sent to a
 * real Nova 26 (Debian's packages, test/support/nova.ts) and to tether's API, both attaching volumes
 * of one real Cinder (loop devices) to QEMU domains of one libvirt; status codes, error types and the
 * key sets of every answer must agree, but for the allow-listed differences (each with its reason).
 * Real Nova, Placement, Cinder, MariaDB, RabbitMQ, Temporal dev server, PostgreSQL, libvirt + QEMU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asTestStack, startCinderStack, type CinderStack } from './support/cinder-stack.ts';
import { cinderAvailability, startCinder, type CinderHandle } from './support/cinder.ts';
import { novaAvailability, startNova, type NovaHandle } from './support/nova.ts';
import { runningServer } from './support/fixtures.ts';
import { needs } from './support/skips.ts';
import { startTestApi, type RunningApi } from './support/clouds.ts';
import {
  applyAllowList,
  compareScenario,
  createVolume,
  formatDifference,
  waitAttached,
  type Answer,
  type Difference,
  type RequestOptions,
  type Shared,
  type Side,
} from './support/differential.ts';
import { ALLOWED_DIFFERENCES, commonMicroversions, scenarioGroups } from './support/differential-scenarios.ts';
import { writeDifferentialResults, type ScenarioRecord } from './support/differential-report.ts';

const availability = [await cinderAvailability('single'), await novaAvailability()].find((a) => !a.available) ?? { available: true, reason: 'ok' };

const say = (line: string) => console.log(`[nova-differential.test] ${line}`);

let cinder: CinderHandle | undefined;
let nova: NovaHandle | undefined;
let stack: CinderStack | undefined;
let api: RunningApi | undefined;
let shared: Shared;
const sides = {} as Record<'nova' | 'tether', Side>;
const differences: Difference[] = [];
const records: ScenarioRecord[] = [];

async function httpAnswer(res: Response): Promise<Answer> {
  const text = await res.text();
  let body: unknown = text === '' ? null : text;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    // not JSON: compared as a string
  }
  return { status: res.status, body, headers: res.headers };
}

function requester(base: string, extraHeaders: Record<string, string>) {
  return async (method: string, path: string, o: RequestOptions = {}): Promise<Answer> => {
    const headers: Record<string, string> = { Accept: 'application/json', ...extraHeaders, ...(o.microversion ? { 'OpenStack-API-Version': `compute ${o.microversion}` } : {}), ...o.headers };
    const body = o.rawBody ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return httpAnswer(await fetch(`${base}/v2.1${path}`, { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(120_000) }));
  };
}

async function maxMicroversion(request: Side['request']): Promise<string> {
  const doc = await request('GET', '/');
  return String((doc.body as { version: { version: string } }).version.version);
}

const groups = scenarioGroups({ commonMicroversions: () => commonMicroversions(sides.nova.maxMicroversion, sides.tether.maxMicroversion) });

describe('Nova and tether, the same requests', needs('nova', availability.available ? null : availability.reason), () => {
  beforeAll(async () => {
    const t0 = performance.now();
    cinder = await startCinder({ mode: 'single', driver: 'loop' });
    shared = { cinder };
    [stack, nova] = await Promise.all([startCinderStack({ sharedCinder: cinder, detachUnplugWaitMs: 3_000 }), startNova({ cinder })]);
    const t = nova.timings;
    say(
      `Nova ready in ${Math.round(t.totalMs)} ms (schemas ${Math.round(t.schemaMs)} ms${t.schemaFromCache ? ' from cached dumps' : ' by db sync'}, API ${Math.round(t.apiMs)} ms, ` +
        `compute up ${Math.round(t.computeMs)} ms), ${Object.entries(nova.rssMiB()).map(([s, m]) => `${s} ${m}`).join(', ')} MiB; tether and Cinder (loop devices) ready after ${Math.round(performance.now() - t0)} ms`,
    );
    api = await startTestApi(asTestStack(stack));

    const novaRequest = requester(nova.url, { 'X-Auth-Token': nova.token });
    const tetherRequest = requester(api.url, {});
    const [novaServer, novaShelved, tetherServer, tetherShelved] = await Promise.all([
      nova.createServer('diff-vm'),
      nova.createServer('diff-shelved'),
      runningServer(asTestStack(stack), 'diff-vm'),
      runningServer(asTestStack(stack), 'diff-shelved'),
    ]);
    const shelve = await novaRequest('POST', `/servers/${novaShelved.id}/action`, { body: { shelve: null } });
    expect(shelve.status, JSON.stringify(shelve.body)).toBe(202);
    await nova.waitServer(novaShelved.id, 'SHELVED_OFFLOADED');
    await stack.service.shelveServer(tetherShelved.uuid);
    await stack.service.shelveOffloadServer(tetherShelved.uuid);

    // a volume in-use on each side, for the other side to be refused
    const [novaInUse, tetherInUse] = await Promise.all([createVolume(shared, 'diff-in-use-by-nova'), createVolume(shared, 'diff-in-use-by-tether')]);
    sides.nova = { name: 'nova', request: novaRequest, serverId: novaServer.id, shelvedServerId: novaShelved.id, volumeInUseElsewhere: tetherInUse, maxMicroversion: await maxMicroversion(novaRequest) };
    sides.tether = { name: 'tether', request: tetherRequest, serverId: tetherServer.uuid, shelvedServerId: tetherShelved.uuid, volumeInUseElsewhere: novaInUse, maxMicroversion: await maxMicroversion(tetherRequest) };
    for (const [side, volumeId] of [[sides.nova, novaInUse], [sides.tether, tetherInUse]] as const) {
      const r = await side.request('POST', `/servers/${side.serverId}/os-volume_attachments`, { microversion: '2.89', body: { volumeAttachment: { volumeId } } });
      expect(r.status, `${side.name}: ${JSON.stringify(r.body)}`).toBe(200);
      await waitAttached(shared, side, side.serverId, volumeId);
    }
    say(`servers and volumes ready after ${Math.round(performance.now() - t0)} ms; microversions: Nova up to ${sides.nova.maxMicroversion}, tether up to ${sides.tether.maxMicroversion}`);
  }, 900_000);

  afterAll(async () => {
    // `npm run nova:diff` keeps what was seen (docs/nova/differential.json, the table in docs/nova.md)
    if (process.env.TETHER_NOVA_DIFF_OUT && nova) writeDifferentialResults(process.env.TETHER_NOVA_DIFF_OUT, { nova, records, sides });
    if (nova) say(`Nova called the Neutron stand-in ${nova.neutronCalls.length} times: ${[...new Set(nova.neutronCalls.map((c) => c.replace(/\?.*/, '?…')))].join(', ')}`);
    await api?.close();
    await Promise.all([nova?.stop(), stack?.stop()]);
    await cinder?.stop();
  }, 180_000);

  for (const group of groups) {
    describe(group.name, () => {
      for (const scenario of group.scenarios) {
        it(scenario.name, async () => {
          const [n, t] = await Promise.all([scenario.run(sides.nova, shared), scenario.run(sides.tether, shared)]);
          const found = compareScenario(`${group.name}: ${scenario.name}`, n, t);
          differences.push(...found);
          const { unexplained, explained } = applyAllowList(found, ALLOWED_DIFFERENCES);
          records.push({ group: group.name, scenario: scenario.name, nova: n, tether: t, explained, unexplained });
          for (const d of explained) say(`allowed: ${formatDifference(d)} — ${d.reason}`);
          expect(unexplained.map(formatDifference)).toEqual([]);
          expect(n.length).toBeGreaterThan(0);
        }, 300_000);
      }
    });
  }

  it('every allow-list entry is still needed', () => {
    const { unused } = applyAllowList(differences, ALLOWED_DIFFERENCES);
    expect(unused.map((a) => `${String(a.scenario)} / ${String(a.path)}: ${a.reason}`)).toEqual([]);
  });
});
