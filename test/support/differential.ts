/**
 * Differential API tests (test/nova-differential.test.ts): the same request sequences sent to a real
 * Nova (test/support/nova.ts) and to tether, both on one Cinder and one libvirt, and what comes back
 * compared: status codes, the error body's type (`itemNotFound`, `badRequest`, …) and code, the key
 * sets of every response body (recursively, with the JSON type of each value) and the microversion
 * headers. Values are never compared (ids, device names and messages differ by nature).
 *
 * A *side* is one of the two APIs with a server of its own; a *scenario* runs on each side and
 * records observations; the comparison pairs them by label. Intended differences are allow-listed
 * (test/support/differential-scenarios.ts), each with its reason; an entry nothing needs fails too.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { CinderHandle } from './cinder.ts';

export type SideName = 'nova' | 'tether';

export interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
}

export interface RequestOptions {
  body?: unknown;
  /** Sent as is (a malformed body). */
  rawBody?: string;
  /** `OpenStack-API-Version: compute <v>`; none sent when undefined. */
  microversion?: string;
  headers?: Record<string, string>;
}

export interface Side {
  name: SideName;
  /** A request below /v2.1 (e.g. `/servers/{id}/os-volume_attachments`). */
  request(method: string, path: string, o?: RequestOptions): Promise<Answer>;
  /** An ACTIVE server of this side. */
  serverId: string;
  /** A server of this side in vm_state shelved_offloaded. */
  shelvedServerId: string;
  /** A volume in-use by a server of the *other* side (this side must refuse to attach it). */
  volumeInUseElsewhere: string;
  /** The highest compute microversion it serves. */
  maxMicroversion: string;
}

/** What both sides share: the Cinder (volumes are made there for both alike). */
export interface Shared {
  cinder: CinderHandle;
}

// ---- volumes in the shared Cinder ----

export async function createVolume(shared: Shared, name: string): Promise<string> {
  const created = await shared.cinder.api<{ volume: { id: string } }>('POST', '/volumes', { volume: { size: 1, name } });
  if (created.status !== 202) throw new Error(`creating volume ${name}: ${created.status} ${JSON.stringify(created.body)}`);
  await waitVolume(shared, created.body.volume.id, 'available');
  return created.body.volume.id;
}

export async function deleteVolume(shared: Shared, id: string): Promise<void> {
  await shared.cinder.api('DELETE', `/volumes/${id}`);
}

export async function volumeStatus(shared: Shared, id: string): Promise<string> {
  const r = await shared.cinder.api<{ volume: { status: string } }>('GET', `/volumes/${id}`);
  return r.status === 200 ? r.body.volume.status : `http ${r.status}`;
}

export async function waitVolume(shared: Shared, id: string, status: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await volumeStatus(shared, id);
    if (last === status) return;
    if (last.startsWith('error')) break;
    await sleep(50);
  }
  throw new Error(`volume ${id} not ${status} (last: ${last})`);
}

/** After a successful attach request: Cinder says in-use and the side lists the attachment. */
export async function waitAttached(shared: Shared, side: Side, serverId: string, volumeId: string): Promise<void> {
  await waitVolume(shared, volumeId, 'in-use');
  await waitFor(`${side.name}: attachment of ${volumeId} shown`, async () => (await side.request('GET', `/servers/${serverId}/os-volume_attachments/${volumeId}`)).status === 200);
}

/** After a successful detach request: Cinder says available and the side no longer shows the attachment. */
export async function waitDetached(shared: Shared, side: Side, serverId: string, volumeId: string): Promise<void> {
  await waitVolume(shared, volumeId, 'available');
  await waitFor(`${side.name}: attachment of ${volumeId} gone`, async () => (await side.request('GET', `/servers/${serverId}/os-volume_attachments/${volumeId}`)).status === 404);
}

async function waitFor(what: string, ok: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
}

// ---- observations ----

/** A JSON value's shape: objects by their keys, arrays by the union of their items' shapes, scalars by type. */
export type Shape = string | { [key: string]: Shape } | Shape[];

export function shapeOf(value: unknown): Shape {
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    if (value.length === 0) return [];
    return [value.map(shapeOf).reduce(mergeShapes)];
  }
  if (typeof value === 'object') {
    const out: Record<string, Shape> = {};
    for (const key of Object.keys(value as object).sort()) out[key] = shapeOf((value as Record<string, unknown>)[key]);
    return out;
  }
  return typeof value;
}

function mergeShapes(a: Shape, b: Shape): Shape {
  if (typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: Record<string, Shape> = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = k in out ? mergeShapes(out[k]!, v) : v;
    return out;
  }
  if (Array.isArray(a) && Array.isArray(b)) return a.length === 0 ? b : b.length === 0 ? a : [mergeShapes(a[0]!, b[0]!)];
  if (JSON.stringify(a) === JSON.stringify(b)) return a;
  // a union of types, the same whatever the order of the items
  const types = (x: Shape) => (typeof x === 'string' ? x.split('|') : [Array.isArray(x) ? 'array' : 'object']);
  return [...new Set([...types(a), ...types(b)])].sort().join('|');
}

export interface Observation {
  label: string;
  status: number;
  /** The top-level key of an error body and its `code` (`badRequest/400`), else null. */
  error: string | null;
  shape: Shape;
  /** The microversion the answer says it used (OpenStack-API-Version), or null. */
  version: string | null;
}

const ERROR_TYPES = new Set(['badRequest', 'itemNotFound', 'conflictingRequest', 'forbidden', 'computeFault', 'notImplemented', 'overLimit', 'badMethod', 'HTTPNotAcceptable', 'notAcceptable', 'unauthorized']);

export function observe(label: string, a: Answer): Observation {
  let error: string | null = null;
  let shape: Shape = shapeOf(a.body ?? null);
  if (a.status >= 400 && a.body && typeof a.body === 'object' && !Array.isArray(a.body)) {
    const keys = Object.keys(a.body);
    if (keys.length === 1 && (ERROR_TYPES.has(keys[0]!) || typeof (a.body as Record<string, { code?: unknown }>)[keys[0]!]?.code === 'number')) {
      const inner = (a.body as Record<string, { code?: unknown }>)[keys[0]!]!;
      error = `${keys[0]}/${String(inner.code)}`;
      shape = 'error';
    }
  }
  return { label, status: a.status, error, shape, version: a.headers.get('openstack-api-version') };
}

/** A scenario runs on one side and returns what it saw, in order. */
export interface Scenario {
  name: string;
  run(side: Side, shared: Shared): Promise<Observation[]>;
}

export interface ScenarioGroup {
  name: string;
  scenarios: Scenario[];
}

// ---- comparison ----

export interface Difference {
  scenario: string;
  label: string;
  /** `status`, `error`, `version`, or a path into the body's shape (`volumeAttachment.tag`). */
  path: string;
  nova: string;
  tether: string;
}

export interface AllowedDifference {
  scenario: string | RegExp;
  label?: string | RegExp;
  path: string | RegExp;
  reason: string;
}

function shapeDiffs(a: Shape, b: Shape, at: string, out: Array<{ path: string; nova: string; tether: string }>): void {
  const isObj = (s: Shape) => typeof s === 'object' && !Array.isArray(s);
  if (isObj(a) && isObj(b)) {
    const ao = a as Record<string, Shape>;
    const bo = b as Record<string, Shape>;
    for (const key of [...new Set([...Object.keys(ao), ...Object.keys(bo)])].sort()) {
      const p = at ? `${at}.${key}` : key;
      if (!(key in ao)) out.push({ path: p, nova: '(absent)', tether: describe(bo[key]!) });
      else if (!(key in bo)) out.push({ path: p, nova: describe(ao[key]!), tether: '(absent)' });
      else shapeDiffs(ao[key]!, bo[key]!, p, out);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    // an empty list on one side says nothing about the items' keys
    if (a.length > 0 && b.length > 0) shapeDiffs(a[0]!, b[0]!, `${at}[]`, out);
    return;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path: at || '(body)', nova: describe(a), tether: describe(b) });
}

function describe(s: Shape): string {
  if (typeof s === 'string') return s;
  if (Array.isArray(s)) return s.length === 0 ? '[]' : `[${describe(s[0]!)}]`;
  return `{${Object.keys(s).join(',')}}`;
}

/** Pairs the observations of one scenario by label (in order) and lists every difference. */
export function compareScenario(scenario: string, nova: Observation[], tether: Observation[]): Difference[] {
  const out: Difference[] = [];
  const labels = [...new Set([...nova.map((o) => o.label), ...tether.map((o) => o.label)])];
  for (const label of labels) {
    const n = nova.find((o) => o.label === label);
    const t = tether.find((o) => o.label === label);
    if (!n || !t) {
      out.push({ scenario, label, path: '(observation)', nova: n ? 'made' : '(missing)', tether: t ? 'made' : '(missing)' });
      continue;
    }
    if (n.status !== t.status) out.push({ scenario, label, path: 'status', nova: String(n.status), tether: String(t.status) });
    if (n.error !== t.error) out.push({ scenario, label, path: 'error', nova: n.error ?? '(none)', tether: t.error ?? '(none)' });
    if (n.version !== t.version) out.push({ scenario, label, path: 'version', nova: n.version ?? '(none)', tether: t.version ?? '(none)' });
    if (n.status === t.status) {
      const diffs: Array<{ path: string; nova: string; tether: string }> = [];
      shapeDiffs(n.shape, t.shape, '', diffs);
      for (const d of diffs) out.push({ scenario, label, ...d });
    }
  }
  return out;
}

const matches = (m: string | RegExp | undefined, value: string) => m === undefined || (typeof m === 'string' ? m === value : m.test(value));

/** Splits differences into allowed ones (with the entry that allows them) and the rest; also the entries nothing needed. */
export function applyAllowList(diffs: Difference[], allowed: AllowedDifference[]) {
  const used = new Set<AllowedDifference>();
  const unexplained: Difference[] = [];
  const explained: Array<Difference & { reason: string }> = [];
  for (const d of diffs) {
    const entry = allowed.find((a) => matches(a.scenario, d.scenario) && matches(a.label, d.label) && matches(a.path, d.path));
    if (entry) {
      used.add(entry);
      explained.push({ ...d, reason: entry.reason });
    } else {
      unexplained.push(d);
    }
  }
  return { unexplained, explained, unused: allowed.filter((a) => !used.has(a)) };
}

export function formatDifference(d: Difference): string {
  return `${d.scenario} / ${d.label} / ${d.path}: nova ${d.nova}, tether ${d.tether}`;
}
