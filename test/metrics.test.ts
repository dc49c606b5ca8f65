/**
 * Metrics: the Prometheus text format of src/metrics/registry.ts; counters, step durations and
 * in-flight gauges moving during real attaches and detaches (activity interceptor + workflow
 * interceptor/sink); the API's /metrics; the compute agent's queues and backlog; the worker
 * listener; the Temporal SDK's own Prometheus endpoint in a worker process.
 *
 * Until workers/control-plane.ts and workers/compute-agent.ts register the interceptors themselves,
 * this file adds them by wrapping Worker.create — exactly the options those files are to pass
 * (src/metrics/worker-options.ts). The wrapper steps aside for a worker that already has them.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { bundleWorkflowCode, Worker, type WorkerOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { projectRoot } from '../src/config.ts';
import { Registry } from '../src/metrics/registry.ts';
import { registry } from '../src/metrics/tether-metrics.ts';
import { activityMetricsInterceptor, metricsSinks, workflowMetricsInterceptorsPath } from '../src/metrics/worker-options.ts';
import { registerComputeAgentMetrics } from '../src/metrics/compute-agent-metrics.ts';
import { metricsListenerFromEnv, startMetricsServer } from '../src/metrics/http.ts';
import { sdkMetricsBindAddress } from '../src/metrics/sdk-metrics.ts';
import { findFreePort } from '../stack/free-port.ts';
import { workflowsPath } from '../workers/control-plane.ts';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { buildTestApi } from './support/clouds.ts';
import { runningServer, volume } from './support/fixtures.ts';
import type { ApiServer } from '../src/api/server.ts';
import type { Instance } from '../src/domain/types.ts';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 240_000 });

// ---- reading the exposition format ----

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    out.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

/** The value of the series with exactly these labels (0 when absent). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  const found = samples.find((s) => s.name === name && Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v));
  return found?.value ?? 0;
}

const scrape = async () => parse(await registry.metricsText());

describe('the Prometheus registry', () => {
  it('renders counters, gauges and histograms in the text format, with escaped labels', async () => {
    const r = new Registry();
    const c = r.counter<'step' | 'reason'>({ name: 't_total', help: 'a counter\nwith two lines', labelNames: ['step', 'reason'] });
    c.inc({ step: 'attachDisk', reason: 'say "hi"\\' });
    c.inc({ step: 'attachDisk', reason: 'say "hi"\\' }, 2);
    const g = r.gauge({ name: 't_gauge', help: 'computed', collect: (x) => x.set(undefined, 7) });
    const h = r.histogram<'step'>({ name: 't_seconds', help: 'h', labelNames: ['step'], buckets: [0.1, 1] });
    h.observe({ step: 'a' }, 0.05);
    h.observe({ step: 'a' }, 0.5);
    h.observe({ step: 'a' }, 5);
    expect(await r.metricsText()).toBe(
      [
        '# HELP t_total a counter\\nwith two lines',
        '# TYPE t_total counter',
        't_total{step="attachDisk",reason="say \\"hi\\"\\\\"} 3',
        '# HELP t_gauge computed',
        '# TYPE t_gauge gauge',
        't_gauge 7',
        '# HELP t_seconds h',
        '# TYPE t_seconds histogram',
        't_seconds_bucket{step="a",le="0.1"} 1',
        't_seconds_bucket{step="a",le="1"} 2',
        't_seconds_bucket{step="a",le="+Inf"} 3',
        't_seconds_sum{step="a"} 5.55',
        't_seconds_count{step="a"} 3',
        '',
      ].join('\n'),
    );
    expect(g.get()).toBe(7);
    expect(() => c.inc({}, -1)).toThrow(/only goes up/);
    expect(() => r.gauge({ name: 't_total', help: '' })).toThrow(/already registered as a counter/);
    expect(r.counter({ name: 't_total', help: '' })).toBe(c);
    expect(() => r.counter({ name: 'bad-name', help: '' })).toThrow(/invalid metric name/);
  });

  it('worker listener settings: off unless TETHER_METRICS_PORT is set; SDK metrics only with TETHER_SDK_METRICS_PORT', () => {
    expect(metricsListenerFromEnv({})).toBeUndefined();
    expect(metricsListenerFromEnv({ TETHER_METRICS_PORT: '0' })).toBeUndefined();
    expect(metricsListenerFromEnv({ TETHER_METRICS_PORT: '9464' })).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(metricsListenerFromEnv({ TETHER_METRICS_PORT: '9464', TETHER_METRICS_HOST: '0.0.0.0' })).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(() => metricsListenerFromEnv({ TETHER_METRICS_PORT: 'x' })).toThrow(/TETHER_METRICS_PORT must be a port number/);
    expect(sdkMetricsBindAddress({})).toBeUndefined();
    expect(sdkMetricsBindAddress({ TETHER_SDK_METRICS_PORT: '9470' })).toBe('127.0.0.1:9470');
    expect(sdkMetricsBindAddress({ TETHER_SDK_METRICS_PORT: '9470', TETHER_METRICS_HOST: '0.0.0.0' })).toBe('0.0.0.0:9470');
  });
});

// ---- real attaches ----

let stack: TestStack;
let api: ApiServer;
let vm: Instance;
let unregisterAgent: () => void;
/** Holds one activity (by name) until released, to look at in-flight values. */
let gate: { activity: string; entered: () => void; released: Promise<void> } | undefined;

const quiet = { log: () => undefined, info: () => undefined, warn: () => undefined, error: console.error, debug: () => undefined, trace: () => undefined };

beforeAll(async () => {
  const metricsBundle: Promise<WorkflowBundleWithSourceMap> = bundleWorkflowCode({ workflowsPath, workflowInterceptorModules: [workflowMetricsInterceptorsPath], logger: quiet });
  const create = Worker.create.bind(Worker);
  vi.spyOn(Worker, 'create').mockImplementation(async (options: WorkerOptions) => {
    const activity = options.interceptors?.activity ?? [];
    const hasActivityMetrics = activity.includes(activityMetricsInterceptor);
    const hasWorkflowMetrics = options.sinks?.tetherMetrics !== undefined;
    const activities =
      options.activities &&
      Object.fromEntries(
        Object.entries(options.activities as Record<string, (...args: unknown[]) => Promise<unknown>>).map(([name, fn]) => [
          name,
          async (...args: unknown[]) => {
            const g = gate;
            if (g?.activity === name) {
              g.entered();
              await g.released;
            }
            return fn(...args);
          },
        ]),
      );
    return create({
      ...options,
      ...(activities ? { activities } : {}),
      interceptors: { ...options.interceptors, activity: hasActivityMetrics ? activity : [...activity, activityMetricsInterceptor] },
      ...(!hasWorkflowMetrics && options.workflowBundle ? { workflowBundle: await metricsBundle, sinks: { ...options.sinks, ...metricsSinks() } } : {}),
    });
  });
  stack = await startTestStack();
  api = await buildTestApi(stack);
  unregisterAgent = registerComputeAgentMetrics({
    host: stack.host,
    servedQueues: () => stack.agent.servedQueues(),
    workflowService: stack.client.workflowService,
    namespace: 'default',
  });
  vm = await runningServer(stack, 'vm-metrics');
});

afterAll(async () => {
  unregisterAgent?.();
  await api?.close();
  await stack?.stop();
  vi.restoreAllMocks();
});

// (the look for an earlier operation is a local activity, isEarlierOperationRunning, when there is nothing to wait for;
// the host connector is read by reserveDeviceName, no activity of its own)
const ATTACH_STEPS = ['isEarlierOperationRunning', 'validateAttach', 'reserveDeviceName', 'reserveVolume', 'initializeConnection', 'attachDisk', 'completeAttachment', 'markBdmAttached'];
const completed = (activity: string) => ({ activity, workflow_type: 'attachVolume', outcome: 'completed', reason: '' });

describe('metrics during real operations', () => {
  it('an attach: every step counted and timed, in-flight while it runs (worker and API), the attach counted as succeeded', async () => {
    const before = await scrape();
    const v = await volume(stack, 'vol-metrics-1');
    let entered!: () => void;
    const inAttachDisk = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    gate = { activity: 'attachDisk', entered, released: new Promise<void>((resolve) => (release = resolve)) };
    let started;
    try {
      started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
      await inAttachDisk;
      const during = await scrape();
      expect(value(during, 'tether_steps_in_flight', { activity: 'attachDisk' })).toBe(1);
      const apiDuring = parse((await api.inject({ url: '/metrics' })).body);
      expect(value(apiDuring, 'tether_operations_in_flight', { workflow_type: 'attachVolume' })).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      release();
      gate = undefined;
    }
    await stack.service.awaitAttach(started.handle);
    await vi.waitFor(async () => {
      expect(value(await scrape(), 'tether_operations_total', { workflow_type: 'attachVolume', outcome: 'succeeded', reason: '' })).toBe(
        value(before, 'tether_operations_total', { workflow_type: 'attachVolume', outcome: 'succeeded', reason: '' }) + 1,
      );
    });
    const after = await scrape();
    for (const step of ATTACH_STEPS) {
      expect(value(after, 'tether_steps_total', completed(step)) - value(before, 'tether_steps_total', completed(step)), step).toBe(1);
      const timed = { activity: step, outcome: 'completed' };
      expect(value(after, 'tether_step_duration_seconds_count', timed) - value(before, 'tether_step_duration_seconds_count', timed), step).toBe(1);
    }
    const attachDiskSeconds =
      value(after, 'tether_step_duration_seconds_sum', { activity: 'attachDisk', outcome: 'completed' }) -
      value(before, 'tether_step_duration_seconds_sum', { activity: 'attachDisk', outcome: 'completed' });
    expect(attachDiskSeconds).toBeGreaterThanOrEqual(0.3); // the gate held it that long
    expect(value(after, 'tether_step_duration_seconds_bucket', { activity: 'attachDisk', outcome: 'completed', le: '+Inf' })).toBe(
      value(after, 'tether_step_duration_seconds_count', { activity: 'attachDisk', outcome: 'completed' }),
    );
    expect(value(after, 'tether_operation_duration_seconds_count', { workflow_type: 'attachVolume', outcome: 'succeeded' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'tether_steps_in_flight', { activity: 'attachDisk' })).toBe(0);
    expect(value(after, 'tether_operations_total', { workflow_type: 'createServer', outcome: 'succeeded', reason: '' })).toBeGreaterThanOrEqual(1);
    const apiAfter = parse((await api.inject({ url: '/metrics' })).body);
    expect(value(apiAfter, 'tether_operations_in_flight', { workflow_type: 'attachVolume' })).toBe(0);
  });

  it('a failed attach: the failing step and the attach counted with the reason, the rollback steps counted', async () => {
    const before = await scrape();
    const v = await volume(stack, 'vol-metrics-fail');
    stack.faults.inject('attachDisk', 'before', { times: 1 });
    try {
      const started = await stack.service.attachVolume({ server: vm.uuid, volume: v.id });
      await expect(stack.service.awaitAttach(started.handle)).rejects.toThrow(/failed at step attachDisk/);
    } finally {
      stack.faults.clear();
    }
    const rolledBack = { workflow_type: 'attachVolume', outcome: 'rolled_back', reason: 'InjectedFault' };
    await vi.waitFor(async () => expect(value(await scrape(), 'tether_operations_total', rolledBack)).toBe(value(before, 'tether_operations_total', rolledBack) + 1));
    const after = await scrape();
    const delta = (labels: Record<string, string>) => value(after, 'tether_steps_total', labels) - value(before, 'tether_steps_total', labels);
    expect(delta({ activity: 'attachDisk', workflow_type: 'attachVolume', outcome: 'failed', reason: 'InjectedFault' })).toBe(1);
    for (const compensation of ['detachDisk', 'deleteAttachment', 'destroyBdm']) expect(delta(completed(compensation)), compensation).toBe(1);
    expect(value(after, 'tether_step_duration_seconds_count', { activity: 'attachDisk', outcome: 'failed' })).toBeGreaterThanOrEqual(1);
  });

  it('a detach is counted too', async () => {
    const v = await volume(stack, 'vol-metrics-detach');
    await stack.service.awaitAttach((await stack.service.attachVolume({ server: vm.uuid, volume: v.id })).handle);
    const before = await scrape();
    const { handle } = await stack.service.detachVolume({ server: vm.uuid, volume: v.id });
    await stack.service.awaitDetach(handle);
    const succeeded = { workflow_type: 'detachVolume', outcome: 'succeeded', reason: '' };
    await vi.waitFor(async () => expect(value(await scrape(), 'tether_operations_total', succeeded)).toBe(value(before, 'tether_operations_total', succeeded) + 1));
    const after = await scrape();
    const detachDisk = { activity: 'detachDisk', workflow_type: 'detachVolume', outcome: 'completed', reason: '' };
    expect(value(after, 'tether_steps_total', detachDisk) - value(before, 'tether_steps_total', detachDisk)).toBe(1);
  });

  it('the compute agent reports its queues and their backlog', async () => {
    const samples = await scrape();
    expect(value(samples, 'tether_agent_task_queues', { host: stack.host })).toBe(stack.agent.servedQueues().length);
    expect(stack.agent.servedQueues().length).toBeGreaterThanOrEqual(2);
    const backlog = samples.filter((s) => s.name === 'tether_task_queue_backlog' && s.labels.host === stack.host);
    expect(backlog.map((s) => s.labels.task_queue).sort()).toEqual([...stack.agent.servedQueues()].sort());
    expect(backlog.every((s) => s.value === 0)).toBe(true); // nothing waiting: every step ran
  });

  it('the API serves /metrics (hidden from the OpenAPI document) and a worker process can serve the same on its own port', async () => {
    const res = await api.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe(Registry.contentType);
    expect(res.body).toContain('# TYPE tether_steps_total counter');
    expect(Object.keys((await api.inject({ url: '/openapi.json' })).json().paths)).not.toContain('/metrics');

    const server = await startMetricsServer({ port: 0 });
    try {
      const scraped = await fetch(server.url);
      expect(scraped.status).toBe(200);
      expect(scraped.headers.get('content-type')).toBe(Registry.contentType);
      const samples = parse(await scraped.text());
      expect(value(samples, 'tether_steps_total', completed('attachDisk'))).toBeGreaterThanOrEqual(1);
      expect(value(samples, 'process_resident_memory_bytes')).toBeGreaterThan(0);
      expect((await fetch(server.url.replace('/metrics', '/'))).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});

describe('the Temporal SDK metrics of a worker process', () => {
  it('are served on TETHER_SDK_METRICS_PORT once installSdkMetrics ran before the first connection', async () => {
    const port = await findFreePort();
    const module = new URL('../src/metrics/sdk-metrics.ts', import.meta.url).href;
    const script = `
      import { NativeConnection, Worker } from '@temporalio/worker';
      import { installSdkMetrics } from ${JSON.stringify(module)};
      installSdkMetrics();
      const connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS });
      const worker = await Worker.create({ connection, taskQueue: 'sdk-metrics-${port}', activities: { noop: async () => undefined } });
      console.log('READY');
      await worker.run();
      await connection.close();
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: projectRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: stack.temporalAddress, TETHER_SDK_METRICS_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    try {
      await vi.waitFor(() => expect(output).toContain('READY'), { timeout: 60_000, interval: 200 });
      let text = '';
      await vi.waitFor(
        async () => {
          text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          expect(text).toMatch(/^temporal_\w+/m);
        },
        { timeout: 30_000, interval: 500 },
      );
      expect(text).toContain(`task_queue="sdk-metrics-${port}"`);
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
  });
});
