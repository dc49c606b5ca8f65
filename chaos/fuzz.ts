/**
 * Bad input, generated rather than hand-listed, from a seeded generator (chaos/random.ts; no
 * property-testing library needed): every route the API lists in /openapi.json gets malformed JSON,
 * wrong types, out-of-range values, huge bodies (1 MiB+), deeply nested JSON, unknown and malformed
 * ids, unicode, injection strings, wrong content types and methods, out-of-range and malformed
 * microversions. Every answer must come within the timeout, never be a 5xx, be a 4xx with a JSON
 * `message` whenever the request is invalid, and the stores (database rows, domain XML, Temporal
 * workflows) must be unchanged afterwards with a clean checker.
 * The CLI gets a handful of generated argument lists: each must exit 2 with `error: ` and no stack trace.
 */
import { createHash } from 'node:crypto';
import type { Instance, Volume } from '../src/domain/types.ts';
import { attachAndWait, check, http, newVolume, result, tidy, type Harness, type HttpAnswer, type HttpFailure } from './harness.ts';
import type { Random } from './random.ts';
import type { CaseResult } from './report.ts';

// ---- value generators ----------------------------------------------------------------------------

const INJECTIONS = [
  "' OR '1'='1",
  "'; DROP TABLE volumes; --",
  "1; SELECT pg_sleep(30) --",
  '" OR ""="',
  '../../../../etc/passwd',
  '..%2F..%2Fetc%2Fpasswd',
  '${jndi:ldap://127.0.0.1/x}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '%s%s%s%n',
  '`id`',
  '$(id)',
  '\\x00\\u0000',
  '__proto__',
  'constructor',
  '*',
  '%',
  '_',
];

const UNICODE = [
  'ボリューム',
  '卷',
  'том-📦',
  '\u202eevil\u202c',
  'e\u0301\u0301\u0301',
  '\u0000',
  'a\u0000b',
  '\ud800',
  '\uffff',
  '\u200b',
  'Ω≈ç√∫',
  '🧨'.repeat(50),
];

/** encodeURIComponent, except that a lone surrogate becomes its (invalid) UTF-8 bytes instead of a throw. */
function enc(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return s.split('').map((ch) => {
      try {
        return encodeURIComponent(ch);
      } catch {
        return '%ED%A0%80';
      }
    }).join('');
  }
}

function bigString(rnd: Random, min: number, max: number): string {
  return 'x'.repeat(rnd.int(min, max));
}

/** A string a careless handler might choke on. */
function nastyString(rnd: Random): string {
  switch (rnd.int(0, 5)) {
    case 0:
      return rnd.pick(INJECTIONS);
    case 1:
      return rnd.pick(UNICODE);
    case 2:
      return bigString(rnd, 256, 5000);
    case 3:
      return `${rnd.pick(UNICODE)}${rnd.pick(INJECTIONS)}`;
    case 4:
      return String.fromCharCode(...Array.from({ length: rnd.int(1, 20) }, () => rnd.int(1, 0x2fff)));
    default:
      return '';
  }
}

/** An id that names nothing, or is not an id at all (already URL-encoded for a path segment). */
function badIdSegment(rnd: Random): string {
  switch (rnd.int(0, 7)) {
    case 0:
      return rnd.uuid(); // well-formed, unknown
    case 1:
      return rnd.uuid().toUpperCase();
    case 2:
      return `${rnd.uuid()}x`;
    case 3:
      return enc(nastyString(rnd) || 'x').slice(0, 3000);
    case 4:
      // (not '..' or '%2e%2e': a URL parser resolves those as dot segments before sending — another route)
      return rnd.pick(['%00', '%ZZ', '%C0%AF', '%FF%FE', '%E0%80%80', '...', '%2F', '%5C', '-1', '0', 'null', 'undefined', 'NaN']);
    case 5:
      return enc(rnd.pick(INJECTIONS));
    case 6:
      return enc(rnd.pick(UNICODE));
    default:
      return String(rnd.int(-1e9, 1e9));
  }
}

const BAD_MICROVERSIONS = ['2.90', '2.0', '2.999', '3.71', '3.1000', '1.1', '4.0', '0.1', '-2.1', '2.1.1', '2.', '.1', '2.01', 'abc', 'latest!', 'caf\u00e9', '2,1', '2.1 2.2', '99999999999999999999.1', '2.99999999999999999999'];

// ---- requests -----------------------------------------------------------------------------------

interface Route {
  method: string;
  path: string;
  params: string[];
  hasBody: boolean;
  microversioned: 'compute' | 'volume' | null;
}

interface FuzzRequest {
  kind: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** The request is invalid: a 2xx is a failure. */
  mustFail: boolean;
}

interface Fixtures {
  /** A running server with an attached volume: real ids that no generated request may change. */
  server: Instance;
  inUse: Volume;
}

function routesOf(openapi: { paths?: Record<string, Record<string, unknown>> }): Route[] {
  const routes: Route[] = [];
  for (const [p, methods] of Object.entries(openapi.paths ?? {})) {
    for (const [m, spec] of Object.entries(methods)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(m)) continue;
      const params = [...p.matchAll(/\{([^}]+)\}/g)].map((x) => x[1]!);
      routes.push({
        method: m.toUpperCase(),
        path: p,
        params,
        hasBody: Boolean((spec as { requestBody?: unknown }).requestBody),
        microversioned: p.startsWith('/v2.1/') ? 'compute' : p.startsWith('/v3/') ? 'volume' : null,
      });
    }
  }
  return routes;
}

/** Path with its parameters filled: real ids where safe, `bad` for the one parameter being fuzzed. */
function fillPath(route: Route, fx: Fixtures, rnd: Random, bad: string | null): string {
  return route.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    if (name === bad) return badIdSegment(rnd);
    if (name === 'project_id') return rnd.bool(0.8) ? 'tether' : enc(nastyString(rnd) || 'p').slice(0, 200);
    if (name === 'server_id') return fx.server.uuid;
    // A real volume only where nothing can change it: GETs, and the in-use volume's DELETE (refused: in-use).
    if (name === 'volume_id') return route.method === 'GET' || (route.method === 'DELETE' && route.path.startsWith('/v3')) ? fx.inUse.id : rnd.uuid();
    return rnd.uuid();
  });
}

function invalidAttachBody(rnd: Random, fx: Fixtures): { body: unknown; kind: string } {
  const good = { volumeId: rnd.uuid() }; // names no volume: even a "valid" shape is a 404
  const variants: Array<() => { body: unknown; kind: string }> = [
    () => ({ kind: 'missing-key', body: {} }),
    () => ({ kind: 'wrong-type', body: rnd.pick([[], 'str', 1, true, null]) }),
    () => ({ kind: 'wrong-type', body: { volumeAttachment: rnd.pick([[], 'x', 1, true, null]) } }),
    () => ({ kind: 'wrong-type', body: { volumeAttachment: { volumeId: rnd.pick([123, {}, [], true, null]) } } }),
    () => ({ kind: 'coercion', body: { volumeAttachment: { volumeId: [fx.inUse.id] } } }),
    () => ({ kind: 'bad-value', body: { volumeAttachment: { volumeId: nastyString(rnd) } } }),
    () => ({ kind: 'bad-value', body: { volumeAttachment: { ...good, device: rnd.pick(['sdb', '/dev/', '/dev/sd!', '/dev/../../etc/passwd', bigString(rnd, 256, 400), nastyString(rnd)]) } } }),
    () => ({ kind: 'bad-value', body: { volumeAttachment: { ...good, tag: rnd.pick(['a/b', 'a,b', bigString(rnd, 61, 200)]) } } }),
    () => ({ kind: 'wrong-type', body: { volumeAttachment: { ...good, delete_on_termination: rnd.pick(['maybe', {}, [], 2]) } } }),
    () => ({ kind: 'extra-field', body: { volumeAttachment: { ...good, [rnd.pick(['bogus', '__proto__', 'serverId', nastyString(rnd) || 'k'])]: 1 } } }),
    () => ({ kind: 'extra-field', body: { volumeAttachment: good, extra: nastyString(rnd) } }),
    () => ({ kind: 'refused', body: { volumeAttachment: { volumeId: fx.inUse.id, device: '/dev/sdz' } } }),
    () => ({ kind: 'unknown-id', body: { volumeAttachment: good } }),
  ];
  return rnd.pick(variants)();
}

function invalidVolumeBody(rnd: Random): { body: unknown; kind: string } {
  const variants: Array<() => { body: unknown; kind: string }> = [
    () => ({ kind: 'missing-key', body: rnd.pick([{}, { volume: {} }, { volume: { name: 'x' } }]) }),
    () => ({ kind: 'wrong-type', body: rnd.pick([[], 'str', 1, true, null, { volume: null }, { volume: [] }]) }),
    () => ({ kind: 'wrong-type', body: { volume: { size: rnd.pick(['abc', {}, null, '1GB', '']) } } }),
    () => ({ kind: 'coercion', body: { volume: { size: rnd.pick([true, [1], [[1]]]) } } }),
    () => ({ kind: 'out-of-range', body: { volume: { size: rnd.pick([0, -1, 1025, 1.5, 1e308, 2 ** 53, -0.5]) } } }),
    () => ({ kind: 'bad-value', body: { volume: { size: 1, name: bigString(rnd, 256, 2000) } } }),
    () => ({ kind: 'bad-value', body: { volume: { size: 1, description: bigString(rnd, 256, 2000) } } }),
    () => ({ kind: 'bad-value', body: { volume: { size: 1, availability_zone: nastyString(rnd) || 'nowhere' } } }),
    () => ({ kind: 'bad-value', body: { volume: { size: 1, volume_type: rnd.pick(['gold', nastyString(rnd) || 'x']) } } }),
    // metadata keys are 1–255 of [a-zA-Z0-9-_:. /]: a nasty string with a character outside them, or empty
    () => ({ kind: 'bad-value', body: { volume: { size: 1, metadata: { [rnd.bool(0.2) ? '' : `${nastyString(rnd)}${rnd.pick(['!', '%', '\u00e9', '<', '\ud800'])}`]: 'v' } } } }),
    () => ({ kind: 'bad-value', body: { volume: { size: 1, [rnd.pick(['snapshot_id', 'source_volid', 'imageRef', 'backup_id'])]: rnd.uuid() } } }),
    () => ({ kind: 'wrong-type', body: { volume: { size: 1, multiattach: rnd.pick(['maybe', {}, [], 7]) } } }),
    () => ({ kind: 'extra-field', body: { volume: { size: 1 }, [rnd.pick(['bogus', 'volumes', nastyString(rnd) || 'k'])]: {} } }),
    () => ({ kind: 'wrong-type', body: { volume: { size: 1 }, 'OS-SCH-HNT:scheduler_hints': rnd.pick(['x', 1, []]) } }),
  ];
  return rnd.pick(variants)();
}

function generate(route: Route, fx: Fixtures, rnd: Random, methodsByPath: Map<string, Set<string>>): FuzzRequest {
  const headers: Record<string, string> = { accept: 'application/json' };
  const kinds: string[] = [];
  if (route.params.some((p) => p !== 'project_id')) kinds.push('bad-id', 'bad-id');
  if (route.microversioned) kinds.push('microversion');
  if (route.hasBody) kinds.push('body', 'body', 'body', 'malformed-json', 'huge-body', 'deep-json', 'content-type');
  if (route.method === 'GET') kinds.push('query');
  kinds.push('method');
  const kind = rnd.pick(kinds);
  const req: FuzzRequest = { kind, method: route.method, path: fillPath(route, fx, rnd, null), headers, mustFail: true };
  const jsonBody = (value: unknown) => {
    req.body = JSON.stringify(value);
    headers['content-type'] = 'application/json';
  };
  // A request that carries a body gets an invalid one unless the body is what is fuzzed.
  const baseBody = () => (route.path.includes('os-volume_attachments') ? invalidAttachBody(rnd, fx) : invalidVolumeBody(rnd));
  switch (kind) {
    case 'bad-id': {
      const name = rnd.pick(route.params.filter((p) => p !== 'project_id'));
      req.kind = `bad-id:${name}`;
      req.path = fillPath(route, fx, rnd, name);
      if (route.hasBody) jsonBody(baseBody().body);
      break;
    }
    case 'microversion': {
      const version = rnd.pick(BAD_MICROVERSIONS);
      if (route.microversioned === 'compute' && rnd.bool(0.3)) headers['x-openstack-nova-api-version'] = version;
      else headers['openstack-api-version'] = `${route.microversioned} ${version}`;
      // everything else valid: only the version is wrong (GETs of real things; a body that would be refused anyway)
      if (route.hasBody) jsonBody(baseBody().body);
      break;
    }
    case 'body': {
      const b = baseBody();
      req.kind = `body:${b.kind}`;
      jsonBody(b.body);
      break;
    }
    case 'malformed-json':
      req.body = rnd.pick(['{', '{"volume":', 'nul', '[1,2', '{"a":1}}', '\u0000', "{'a': 1}", '{"a":1,}', '{"volumeAttachment":{"volumeId":"', '\ufeff{"x":', 'NaN', '{"a":01}']);
      headers['content-type'] = 'application/json';
      break;
    case 'huge-body': {
      const size = rnd.int(1_100_000, 1_600_000);
      req.body = route.path.includes('os-volume_attachments')
        ? JSON.stringify({ volumeAttachment: { volumeId: rnd.uuid(), tag: 'x'.repeat(size) } })
        : JSON.stringify({ volume: { size: 1, name: 'x'.repeat(size) } });
      headers['content-type'] = 'application/json';
      break;
    }
    case 'deep-json': {
      const depth = rnd.int(5_000, 60_000);
      req.body = `{"volume":${'['.repeat(depth)}${']'.repeat(depth)}}`;
      headers['content-type'] = 'application/json';
      break;
    }
    case 'content-type':
      req.body = JSON.stringify(baseBody().body);
      headers['content-type'] = rnd.pick(['text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x', 'application/json-patch+json', 'image/png']);
      break;
    case 'query': {
      const key = rnd.pick(['name', 'limit', 'offset', 'all_tenants', nastyString(rnd) || 'k', 'changes-since', 'sort_key']);
      const value = rnd.bool(0.5) ? rnd.pick(['-1', 'abc', '1e400', '0x10', '9999999999999999999999', '']) : nastyString(rnd);
      req.path += `?${enc(key)}=${enc(value).slice(0, 4000)}`;
      // A filter with an odd value may legitimately match nothing (200 []); limit/offset must be numbers >= 0.
      req.mustFail = route.path.endsWith('os-volume_attachments') && (key === 'limit' || key === 'offset') && !/^\d+$/.test(value);
      break;
    }
    case 'method': {
      // a method the path does not serve: 404/405 with a message, whatever the body
      const served = methodsByPath.get(route.path) ?? new Set<string>();
      req.method = rnd.pick(['PUT', 'PATCH', 'POST', 'DELETE'].filter((m) => !served.has(m)));
      // never aim a method at real things: unknown ids everywhere
      req.path = route.path.replace(/\{([^}]+)\}/g, (_, n: string) => (n === 'project_id' ? 'tether' : rnd.uuid()));
      if (req.method !== 'DELETE') jsonBody(route.path.startsWith('/v3') ? invalidVolumeBody(rnd).body : invalidAttachBody(rnd, fx).body);
      break;
    }
  }
  return req;
}

/**
 * Corner values the generator can draw but may not in a short run, sent every time: each once showed
 * a bug (NUL in an id, a query or a body; a body type Ajv coerces; a microversion with two tokens;
 * an integer query parameter that overflows to Infinity).
 */
function regressionProbes(fx: Fixtures, rnd: Random): FuzzRequest[] {
  const json = { accept: 'application/json', 'content-type': 'application/json' };
  const base = { headers: { accept: 'application/json' } };
  return [
    { kind: 'probe:nul-id', method: 'DELETE', path: `/v2.1/servers/${fx.server.uuid}/os-volume_attachments/a%00b`, ...base, mustFail: true },
    { kind: 'probe:nul-query', method: 'GET', path: '/v2.1/servers/detail?name=%00', ...base, mustFail: false },
    { kind: 'probe:nul-body', method: 'POST', path: '/v3/volumes', headers: json, body: JSON.stringify({ volume: { size: 1, name: `a\u0000${rnd.int(0, 9)}` } }), mustFail: true },
    { kind: 'probe:coercion', method: 'POST', path: '/v3/volumes', headers: json, body: JSON.stringify({ volume: { size: rnd.pick([true, [1]]) } }), mustFail: true },
    { kind: 'probe:microversion', method: 'GET', path: '/v2.1/servers', headers: { accept: 'application/json', 'openstack-api-version': 'compute 2.1 2.2' }, mustFail: true },
    { kind: 'probe:infinity', method: 'GET', path: `/v2.1/servers/${fx.server.uuid}/os-volume_attachments?limit=${rnd.pick(['1e400', 'Infinity'])}`, ...base, mustFail: true },
    // found by the 10 000-request run (--fuzz --seed 22): a lone surrogate in a metadata key was a 500
    // (PostgreSQL's jsonb refuses it), metadata keys outside Cinder's pattern were accepted, limit=0x10 was 16
    { kind: 'probe:lone-surrogate', method: 'POST', path: '/v3/volumes', headers: json, body: JSON.stringify({ volume: { size: 1, metadata: { '\ud800<script>': 'v' } } }), mustFail: true },
    { kind: 'probe:metadata-key', method: 'POST', path: '/v3/volumes', headers: json, body: JSON.stringify({ volume: { size: 1, metadata: { '..%2F..%2Fetc%2Fpasswd': 'v' } } }), mustFail: true },
    { kind: 'probe:hex-limit', method: 'GET', path: `/v2.1/servers/${fx.server.uuid}/os-volume_attachments?limit=${rnd.pick(['0x10', '1e1', '+1'])}`, ...base, mustFail: true },
  ];
}

function findMessage(json: unknown): string | null {
  if (json === null || typeof json !== 'object') return null;
  const o = json as Record<string, unknown>;
  if (typeof o.message === 'string' && o.message) return o.message;
  for (const v of Object.values(o)) {
    if (v && typeof v === 'object' && typeof (v as Record<string, unknown>).message === 'string' && (v as Record<string, string>).message) return (v as Record<string, string>).message!;
  }
  return null;
}

function judge(req: FuzzRequest, a: HttpAnswer | HttpFailure): string | null {
  // A body over the limit is answered 413 and the connection closed before the upload ends: the
  // client may see its write fail (EPIPE, a reset) instead of the answer — refused all the same.
  if (a.status === 0 && req.kind.startsWith('huge-body') && /EPIPE|ECONNRESET|other side closed/.test((a as HttpFailure).error)) return null;
  if (a.status === 0) return (a as HttpFailure).timedOut ? `no answer within the timeout (hang)` : `no answer: ${(a as HttpFailure).error}`;
  const ans = a as HttpAnswer;
  if (ans.status >= 500) return `${ans.status}: ${ans.text.slice(0, 160)}`;
  if (ans.status < 400) return req.mustFail ? `accepted an invalid request: ${ans.status} ${ans.text.slice(0, 160)}` : null;
  if (!findMessage(ans.json)) return `${ans.status} without a JSON message: ${JSON.stringify(ans.text.slice(0, 120))}`;
  return null;
}

function describeRequest(req: FuzzRequest): string {
  const body = req.body === undefined ? '' : req.body.length > 120 ? ` body(${req.body.length} bytes: ${JSON.stringify(req.body.slice(0, 60))}…)` : ` body ${JSON.stringify(req.body)}`;
  const headers = Object.entries(req.headers).filter(([k]) => k !== 'accept').map(([k, v]) => `${k}: ${v.slice(0, 60)}`).join('; ');
  const path = req.path.length > 160 ? `${req.path.slice(0, 160)}…(${req.path.length})` : req.path;
  return `[${req.kind}] ${req.method} ${path}${headers ? ` {${headers}}` : ''}${body}`;
}

/** Rows of every table tether keeps state in, the domains' XML, and our workflows: a fingerprint and the rows. */
async function snapshot(h: Harness): Promise<{ hash: string; parts: Record<string, string> }> {
  const parts: Record<string, string> = {};
  for (const table of ['instances', 'block_device_mappings', 'volumes', 'volume_attachments']) {
    const { rows } = await h.stack.db.query(`SELECT * FROM ${table} ORDER BY 1`);
    parts[table] = JSON.stringify(rows);
  }
  for (const s of h.servers) {
    parts[`domain ${s.uuid}`] = (await h.stack.libvirt.getXml(s.uuid, { inactive: true })) + (await h.stack.libvirt.getXml(s.uuid));
  }
  const ids: string[] = [];
  for await (const w of h.stack.client.workflow.list({ query: `TaskQueue = '${h.stack.controlTaskQueue}'` })) ids.push(`${w.workflowId}/${w.runId}`);
  parts.workflows = ids.sort().join('\n');
  const hash = createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  return { hash, parts };
}

export async function fuzzApi(h: Harness, run: number, o: { requests: number }): Promise<CaseResult> {
  const scenario = 'fuzz API (every route of /openapi.json)';
  const rnd = h.rnd.fork();
  const spec = await http(h, 'GET', '/openapi.json');
  if (spec.status !== 200) {
    return result(h, scenario, run, { passed: false, converged: false, outcome: 'no openapi', leaked: 0, convergeMs: null, notes: [], failure: `GET /openapi.json: ${spec.status}` });
  }
  const routes = routesOf((spec as HttpAnswer).json as { paths?: Record<string, Record<string, unknown>> });
  const server = h.servers[0]!;
  const inUse = await newVolume(h, 'chaos-fuzz-in-use');
  await attachAndWait(h, server, inUse);
  const fx: Fixtures = { server, inUse };
  const crashesBefore = h.stack.workers.api.crashes.length;
  const before = await snapshot(h);
  const t0 = Date.now();

  const problems: string[] = [];
  const byStatus = new Map<number, number>();
  const byKind = new Map<string, number>();
  let slowest = 0;
  // Every route at least once, then random routes; a few requests in flight at a time.
  const plan = [...routes, ...Array.from({ length: Math.max(0, o.requests - routes.length) }, () => rnd.pick(routes))];
  const methodsByPath = new Map<string, Set<string>>();
  for (const r of routes) methodsByPath.set(r.path, new Set([...(methodsByPath.get(r.path) ?? []), r.method]));
  const requests = [...regressionProbes(fx, rnd), ...plan.map((route) => generate(route, fx, rnd, methodsByPath))];
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const req = requests[next++]!;
      const a = await http(h, req.method, req.path, { headers: req.headers, ...(req.body !== undefined ? { rawBody: req.body } : {}), timeoutMs: 15_000 });
      byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
      byKind.set(req.kind.split(':')[0]!, (byKind.get(req.kind.split(':')[0]!) ?? 0) + 1);
      slowest = Math.max(slowest, a.ms);
      const bad = judge(req, a);
      if (bad) problems.push(`${describeRequest(req)} → ${bad}`);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  const elapsed = Date.now() - t0;

  const after = await snapshot(h);
  const changed = Object.keys(before.parts).filter((k) => before.parts[k] !== after.parts[k]);
  if (after.hash !== before.hash) problems.push(`the stores changed: ${changed.join(', ')}`);
  const crashes = h.stack.workers.api.crashes.length - crashesBefore;
  if (crashes > 0) problems.push(`the API process died ${crashes} time(s)`);
  const checked = await check(h);
  if (checked.disagreements.length || checked.inFlight.length) problems.push(`checker:\n${checked.text}`);

  // Undo what an accepted invalid request may have created (the failure above already says so).
  if (changed.includes('volumes')) {
    const known = new Set((JSON.parse(before.parts.volumes!) as Array<{ id: string }>).map((v) => v.id));
    for (const v of await h.stack.blockStorage.listVolumes()) if (!known.has(v.id)) await h.stack.service.deleteVolume(v.id).catch(() => undefined);
  }
  problems.push(...(await tidy(h, [{ server, volume: inUse }])));

  const fiveXx = [...byStatus].filter(([status]) => status >= 500).reduce((n, [, k]) => n + k, 0);
  const notes = [
    `${requests.length} requests over ${routes.length} routes in ${(elapsed / 1000).toFixed(1)} s (slowest ${slowest} ms)`,
    `5xx answers: ${fiveXx}; no answer: ${byStatus.get(0) ?? 0}; stores changed: ${changed.length === 0 ? 'none' : changed.join(', ')}`,
    `statuses: ${[...byStatus].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`,
    `kinds: ${[...byKind].map(([k, n]) => `${k}×${n}`).join(' ')}`,
  ];
  return result(h, scenario, run, {
    passed: problems.length === 0,
    converged: true,
    outcome: problems.length ? `${problems.length} bad answers` : 'all refused cleanly',
    leaked: changed.length,
    convergeMs: null,
    notes: [...notes, ...problems.slice(0, 40).map((p) => `✗ ${p}`), ...(problems.length > 40 ? [`… and ${problems.length - 40} more`] : [])],
    ...(problems.length ? { failure: `${problems.length} problem(s), e.g. ${problems[0]!.slice(0, 400)}` } : {}),
  });
}

// ---- the CLI ----------------------------------------------------------------------------------------

function cliArgs(rnd: Random, server: Instance): { args: string[]; why: string } {
  const nx = () => rnd.pick([`nx-${rnd.int(0, 1e9).toString(36)}`, rnd.uuid(), rnd.pick(INJECTIONS), rnd.pick(UNICODE.filter((u) => !u.includes('\u0000')))]);
  const variants: Array<() => { args: string[]; why: string }> = [
    () => ({ why: 'unknown server and volume', args: [rnd.pick(['attach', 'detach', 'retry', 'history']), nx(), nx()] }),
    () => ({ why: 'invalid device path', args: ['attach', server.uuid, nx(), '--device', rnd.pick(['sdb', '/dev/', '/dev/sd!', '/dev/../../etc/passwd', bigString(rnd, 300, 400)])] }),
    () => ({ why: 'invalid tag', args: ['attach', server.uuid, nx(), '--tag', rnd.pick(['a/b', 'a,b', bigString(rnd, 61, 100)])] }),
    () => ({ why: 'bad size', args: ['volume', 'create', `nx-${rnd.int(0, 1e6)}`, '--size', rnd.pick(['abc', '-1', '0', '1e9', '1.5', '', 'Infinity', 'NaN'])] }),
    () => ({ why: 'unknown volume', args: ['volume', 'delete', nx()] }),
    () => ({ why: 'unknown server', args: ['server', rnd.pick(['show', 'shelve', 'unshelve', 'delete', 'shelve-offload']), nx()] }),
    () => ({ why: 'missing argument', args: [rnd.pick(['attach', 'detach', 'retry', 'history']), ...(rnd.bool() ? [nx()] : [])] }),
    () => ({ why: 'unknown command', args: [rnd.pick(['frobnicate', 'attach-volume', 'volumes', '--', 'ATTACH'])] }),
    () => ({ why: 'unknown option', args: ['attach', nx(), nx(), rnd.pick(['--bogus', '--devic', '-x', '--device'])] }),
    () => ({ why: 'bad choice', args: ['history', nx(), nx(), '--kind', rnd.pick(['sideways', '', 'ATTACH'])] }),
    () => ({ why: 'bad number', args: ['operations', '--limit', rnd.pick(['abc', '-5', '1.5', 'NaN'])] }),
  ];
  return rnd.pick(variants)();
}

export async function fuzzCli(h: Harness, run: number, o: { lists: number }): Promise<CaseResult> {
  const scenario = 'fuzz CLI (generated argument lists)';
  const rnd = h.rnd.fork();
  const server = h.servers[0]!;
  const lists = Array.from({ length: o.lists }, () => cliArgs(rnd, server));
  const problems: string[] = [];
  const notes: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < lists.length) {
      const { args, why } = lists[next++]!;
      const r = await h.stack.runCli(args, 60_000);
      const shown = args.map((a) => (a.length > 40 ? `${a.slice(0, 40)}…` : a)).map((a) => JSON.stringify(a)).join(' ');
      const firstError = r.stderr.split('\n').find((l) => l.startsWith('error: ')) ?? '';
      notes.push(`tether ${shown} (${why}) → exit ${r.code}: ${firstError.slice(0, 120) || r.stderr.split('\n')[0]?.slice(0, 120)}`);
      const wrong: string[] = [];
      if (r.timedOut) wrong.push('did not exit within 60 s');
      if (r.code !== 2) wrong.push(`exit ${r.code}, expected 2`);
      if (!/^error: /m.test(r.stderr)) wrong.push('no "error: " line on stderr');
      if (/\n\s+at .+[(:]\d+/.test(r.stderr)) wrong.push('a stack trace on stderr');
      if (wrong.length) problems.push(`tether ${shown} (${why}): ${wrong.join(', ')}`);
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  return result(h, scenario, run, {
    passed: problems.length === 0,
    converged: true,
    outcome: problems.length ? `${problems.length}/${lists.length} wrong` : `${lists.length} refused with exit 2`,
    leaked: 0,
    convergeMs: null,
    notes,
    ...(problems.length ? { failure: problems.join('; ') } : {}),
  });
}
