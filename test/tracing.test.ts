/**
 * OpenTelemetry tracing end to end: an OTLP/HTTP receiver runs in this test; tracing is started by
 * the same function every tether process uses (startTracingFromEnv, from OTEL_EXPORTER_OTLP_ENDPOINT),
 * and the test stack builds its client, workers and workflow bundle through the production code
 * (clientOptions, createControlPlaneWorker, ComputeAgent, workflowInterceptorModules), so Temporal's
 * interceptors are installed exactly as in `npm start`. A real attach goes in over HTTP with a
 * `traceparent`; one trace must hold the HTTP span, the update-with-start, the workflow, every step's
 * activity and the libvirt and block-storage calls, correctly parented, and no secret.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTracingSettings } from '../src/config.ts';
import type { BlockStorage } from '../src/blockstorage/block-storage.ts';
import type { LibvirtConnection } from '../src/libvirt/binding.ts';
import { attachWorkflowId } from '../src/domain/steps.ts';
import { liveBdmsOfInstance } from '../src/db/block-device-mappings.ts';
import { tracedBlockStorage } from '../src/tracing/traced-block-storage.ts';
import { tracedLibvirt } from '../src/tracing/traced-libvirt.ts';
import { tracingActivityInterceptors, tracingClientInterceptors, tracingSinks, tracingWorkflowInterceptorModules } from '../src/tracing/temporal-tracing.ts';
import { activeTracing, startTracingFromEnv, type Tracing } from '../src/tracing/tracing.ts';
import { workflowInterceptorModules } from '../src/temporal/workflow-interceptor-modules.ts';
import { startTestApi, type RunningApi } from './support/clouds.ts';
import { runningServer, volume } from './support/fixtures.ts';
import { startTestStack, type TestStack } from './support/test-stack.ts';

/** One span as the OTLP/HTTP JSON exporter sends it (ids in hex). */
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
  status?: { code?: number; message?: string };
}

const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CLIENT = 3;
const STATUS_ERROR = 2;

/** A minimal OTLP/HTTP receiver: POST /v1/traces with a JSON ExportTraceServiceRequest. */
class OtlpReceiver {
  readonly spans: Array<OtlpSpan & { service: string }> = [];
  /** Every request body as received, to search for secrets in everything that left the process. */
  readonly rawBodies: string[] = [];
  readonly contentTypes = new Set<string>();
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      this.contentTypes.add(String(req.headers['content-type']));
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      this.rawBodies.push(body);
      const request = JSON.parse(body) as {
        resourceSpans?: Array<{
          resource?: { attributes?: OtlpSpan['attributes'] };
          scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
        }>;
      };
      for (const rs of request.resourceSpans ?? []) {
        const service = String(rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue);
        for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) this.spans.push({ ...span, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function attr(span: OtlpSpan, key: string): unknown {
  const v = span.attributes?.find((a) => a.key === key)?.value;
  if (!v) return undefined;
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('boolValue' in v) return v.boolValue;
  return v;
}

/** Flushes until `ready` holds (workflow spans reach the processor through a sink, after the activation). */
async function flushUntil(tracing: Tracing, ready: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await tracing.forceFlush();
    if (ready()) return;
    if (Date.now() > deadline) throw new Error('spans did not arrive in time');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const ENV_KEYS = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_SERVICE_NAME', 'OTEL_SDK_DISABLED', 'TETHER_CODEC_KEYS'] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));

function restoreEnv(): void {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
}

describe('tracing off (no OTLP endpoint)', () => {
  it('installs nothing: no provider, no interceptors, no workflow module, no sink, no wrappers', () => {
    for (const k of ENV_KEYS) delete process.env[k];
    try {
      expect(loadTracingSettings().endpoint).toBeUndefined();
      expect(startTracingFromEnv('test')).toBeUndefined();
      expect(activeTracing()).toBeUndefined();
      expect(tracingClientInterceptors()).toEqual([]);
      expect(tracingActivityInterceptors()).toEqual([]);
      expect(tracingWorkflowInterceptorModules()).toEqual([]);
      expect(tracingSinks()).toEqual({});
      expect(workflowInterceptorModules()).toHaveLength(2); // the metrics and the activity-summaries modules only
      const libvirt = {} as LibvirtConnection;
      const storage = { kind: 'local' } as BlockStorage;
      expect(tracedLibvirt(libvirt)).toBe(libvirt);
      expect(tracedBlockStorage(storage)).toBe(storage);
    } finally {
      restoreEnv();
    }
  });

  it('reads the standard variables: the traces endpoint wins, OTEL_SDK_DISABLED turns it off', () => {
    try {
      process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://collector:4318';
      expect(loadTracingSettings()).toEqual({ endpoint: 'http://collector:4318', serviceName: undefined });
      process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = 'http://tempo:4318/v1/traces';
      process.env.OTEL_SERVICE_NAME = 'tether-api-eu1';
      expect(loadTracingSettings()).toEqual({ endpoint: 'http://tempo:4318/v1/traces', serviceName: 'tether-api-eu1' });
      process.env.OTEL_SDK_DISABLED = 'true';
      expect(loadTracingSettings().endpoint).toBeUndefined();
    } finally {
      restoreEnv();
    }
  });
});

describe('tracing on: one attach, one trace', () => {
  const receiver = new OtlpReceiver();
  const codecKey = randomBytes(32).toString('base64');
  const authToken = `tok-${randomBytes(12).toString('hex')}`;
  let tracing: Tracing;
  let stack: TestStack;
  let api: RunningApi;

  beforeAll(async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = await receiver.listen();
    delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    delete process.env.OTEL_SERVICE_NAME;
    process.env.TETHER_CODEC_KEYS = `trace-test:${codecKey}`;
    // What workers/process.ts does first in every tether process.
    tracing = startTracingFromEnv('test')!;
    expect(tracing).toBeDefined();
    stack = await startTestStack();
    api = await startTestApi(stack);
  });

  afterAll(async () => {
    await api?.close();
    await stack?.stop();
    await tracing?.shutdown();
    await receiver.close();
    restoreEnv();
  });

  it('spans the HTTP request, update-with-start, the workflow, each activity and the libvirt and block-storage calls', async () => {
    const vm = await runningServer(stack, 'vm-trace');
    const v = await volume(stack, 'vol-trace');
    const traceId = randomBytes(16).toString('hex');
    const callerSpanId = randomBytes(8).toString('hex');

    const response = await fetch(`${api.url}/v2.1/servers/${vm.uuid}/os-volume_attachments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${callerSpanId}-01`, 'x-auth-token': authToken },
      body: JSON.stringify({ volumeAttachment: { volumeId: v.id } }),
    });
    expect(response.status).toBe(200);
    await stack.client.workflow.getHandle(attachWorkflowId(vm.uuid, v.id)).result();

    const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId);
    const named = (name: string) => inTrace().filter((s) => s.name === name);
    const one = (name: string) => {
      const found = named(name);
      expect(found, `${name} in the trace (have: ${[...new Set(inTrace().map((s) => s.name))].join(', ')})`).toHaveLength(1);
      return found[0]!;
    };
    await flushUntil(tracing, () => named('RunWorkflow:attachVolume').length > 0 && named('RunActivity:markBdmAttached').length > 0);

    // HTTP server span: a child of the caller's span (traceparent honoured).
    const httpSpan = one('POST /v2.1/servers/:server_id/os-volume_attachments');
    expect(httpSpan.kind).toBe(SPAN_KIND_SERVER);
    expect(httpSpan.parentSpanId).toBe(callerSpanId);
    expect(attr(httpSpan, 'http.request.method')).toBe('POST');
    expect(attr(httpSpan, 'http.route')).toBe('/v2.1/servers/:server_id/os-volume_attachments');
    expect(attr(httpSpan, 'http.response.status_code')).toBe(200);
    expect(httpSpan.service).toBe('tether-test');

    // Temporal client: update-with-start, a child of the HTTP span.
    const uws = one('UpdateWithStartWorkflow:reservation');
    expect(uws.parentSpanId).toBe(httpSpan.spanId);
    expect(attr(uws, 'temporalWorkflowId')).toBe(attachWorkflowId(vm.uuid, v.id));

    // The workflow run, a child of the client span; the update handler too.
    const run = one('RunWorkflow:attachVolume');
    expect(run.parentSpanId).toBe(uws.spanId);
    expect(one('HandleUpdate:reservation').parentSpanId).toBe(uws.spanId);

    // Every step: StartActivity in the workflow (child of the run), RunActivity on the worker (child of that).
    // (The host connector is read by reserveDeviceName: no activity of its own.)
    const steps = ['isEarlierOperationRunning', 'validateAttach', 'reserveDeviceName', 'reserveVolume', 'initializeConnection', 'attachDisk', 'completeAttachment', 'markBdmAttached'];
    const runActivity: Record<string, OtlpSpan> = {};
    for (const step of steps) {
      const start = one(`StartActivity:${step}`);
      expect(start.parentSpanId, `StartActivity:${step}`).toBe(run.spanId);
      runActivity[step] = one(`RunActivity:${step}`);
      expect(runActivity[step]!.parentSpanId, `RunActivity:${step}`).toBe(start.spanId);
    }
    // …and no activity of this attach ran outside the trace or under another parent.
    const starts = new Map(inTrace().filter((s) => s.name.startsWith('StartActivity:')).map((s) => [s.spanId, s]));
    for (const activity of inTrace().filter((s) => s.name.startsWith('RunActivity:'))) {
      expect(starts.get(activity.parentSpanId ?? '')?.parentSpanId, activity.name).toBe(run.spanId);
    }
    // The ordering step asks Temporal about the counterpart workflow: its client call nests under the activity.
    expect(one('DescribeWorkflow').parentSpanId).toBe(runActivity.isEarlierOperationRunning!.spanId);

    // libvirt: the disk plugged in by attachDisk (config and live), with the instance and the flags.
    const plugs = named('libvirt.attachDevice');
    expect(plugs.length).toBeGreaterThanOrEqual(1);
    for (const plug of plugs) {
      expect(plug.kind).toBe(SPAN_KIND_CLIENT);
      expect(plug.parentSpanId).toBe(runActivity.attachDisk!.spanId);
      expect(attr(plug, 'tether.instance.uuid')).toBe(vm.uuid);
      expect(attr(plug, 'tether.step')).toBe('attachDisk');
      expect(attr(plug, 'libvirt.affect.config')).toBe(true);
    }
    expect(named('libvirt.getXml').some((s) => s.parentSpanId === runActivity.attachDisk!.spanId)).toBe(true);

    // block storage: reserve, initialize (connection_info), complete — each under its step.
    const reserve = one('blockstorage.createAttachment');
    expect(reserve.parentSpanId).toBe(runActivity.reserveVolume!.spanId);
    expect(attr(reserve, 'tether.volume.id')).toBe(v.id);
    expect(attr(reserve, 'tether.instance.uuid')).toBe(vm.uuid);
    expect(attr(reserve, 'tether.block_storage.kind')).toBe('local');
    const [bdm] = await liveBdmsOfInstance(stack.db, vm.uuid).then((bdms) => bdms.filter((b) => b.volumeId === v.id));
    const update = one('blockstorage.updateAttachment');
    expect(update.parentSpanId).toBe(runActivity.initializeConnection!.spanId);
    expect(attr(update, 'tether.attachment.id')).toBe(bdm!.attachmentId);
    expect(attr(update, 'tether.device')).toBe(bdm!.deviceName);
    expect(one('blockstorage.completeAttachment').parentSpanId).toBe(runActivity.completeAttachment!.spanId);

    // Nothing secret left the process: the API token, the payload key, the connection_info written to the BDM.
    const everything = receiver.rawBodies.join('\n');
    expect(everything).toContain(traceId);
    expect(everything).not.toContain(authToken);
    expect(everything).not.toContain(codecKey);
    expect(everything).not.toContain('connection_info');
    expect(everything.toLowerCase()).not.toContain('x-auth-token');
    expect(receiver.contentTypes).toEqual(new Set(['application/json']));
  });

  it('records calls, not what they carry: no connection_info, secret value or failure message in a span', async () => {
    const chapPassword = `chap-${randomBytes(8).toString('hex')}`;
    const cephxKey = randomBytes(24).toString('base64');
    const luksKey = randomBytes(32).toString('hex');
    const storage = {
      kind: 'fake',
      async updateAttachment() {
        return { driver_volume_type: 'iscsi', data: { auth_method: 'CHAP', auth_username: 'u', auth_password: chapPassword } };
      },
      async completeAttachment() {
        throw new Error(`login failed for password ${chapPassword}`);
      },
      async getEncryptionKey() {
        return Buffer.from(luksKey, 'hex');
      },
    } as unknown as BlockStorage;
    const libvirt = {
      async defineSecret(_xml: string, _value: Buffer) {
        return '8f1e4c1a-5c1b-4c57-9a0e-111111111111';
      },
    } as unknown as LibvirtConnection;
    const traceId = await tracing.tracer.startActiveSpan('test-root', async (root) => {
      const traced = tracedBlockStorage(storage);
      const info = await traced.updateAttachment('att-1', { host: 'compute-x', mountpoint: '/dev/sdc' } as never);
      expect(info.data.auth_password).toBe(chapPassword); // the caller still gets it
      await expect(traced.completeAttachment('att-1')).rejects.toThrow('login failed');
      expect((await traced.getEncryptionKey('vol-luks', { encryptionKeyId: 'key-1' } as never)).toString('hex')).toBe(luksKey);
      await tracedLibvirt(libvirt).defineSecret(`<secret ephemeral='no' private='yes'><usage type='ceph'><name>${cephxKey}</name></usage></secret>`, Buffer.from(cephxKey));
      root.end();
      return root.spanContext().traceId;
    });
    const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId);
    await flushUntil(tracing, () => inTrace().some((s) => s.name === 'test-root'));

    const byName = Object.fromEntries(inTrace().map((s) => [s.name, s]));
    expect(attr(byName['blockstorage.updateAttachment']!, 'tether.attachment.id')).toBe('att-1');
    expect(attr(byName['blockstorage.updateAttachment']!, 'tether.host')).toBe('compute-x');
    const failed = byName['blockstorage.completeAttachment']!;
    expect(failed.status?.code).toBe(STATUS_ERROR);
    expect(attr(failed, 'error.type')).toBe('Error');
    expect(byName['libvirt.defineSecret']).toBeDefined();
    expect(attr(byName['blockstorage.getEncryptionKey']!, 'tether.volume.id')).toBe('vol-luks');
    const exported = JSON.stringify(inTrace());
    expect(exported).not.toContain(chapPassword);
    expect(exported).not.toContain(cephxKey);
    expect(exported).not.toContain(luksKey);
    expect(exported).not.toContain(Buffer.from(luksKey, 'hex').toString('base64'));
    expect(exported).not.toContain('key-1');
    expect(exported).not.toContain('login failed');
  });
});
