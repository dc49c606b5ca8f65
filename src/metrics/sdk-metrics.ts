/**
 * The Temporal SDK's own metrics (worker task slots, poll latencies, activity/workflow task counts,
 * sticky cache…), exported by SDK Core's Prometheus endpoint. Worker processes only, and only when
 * TETHER_SDK_METRICS_PORT is set (TETHER_SDK_METRICS_HOST, else TETHER_METRICS_HOST, else 127.0.0.1).
 * Must run before the process's first NativeConnection (Runtime.install refuses afterwards).
 */
import { Runtime, type RuntimeOptions } from '@temporalio/worker';

type Env = Record<string, string | undefined>;

export function sdkMetricsBindAddress(env: Env = process.env): string | undefined {
  const raw = env.TETHER_SDK_METRICS_PORT?.trim();
  if (!raw) return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`TETHER_SDK_METRICS_PORT must be a port number, got ${JSON.stringify(raw)}`);
  const host = env.TETHER_SDK_METRICS_HOST?.trim() || env.TETHER_METRICS_HOST?.trim() || '127.0.0.1';
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Installs the SDK runtime with a Prometheus exporter when TETHER_SDK_METRICS_PORT is set, and with
 * the process's own runtime options (`runtime`, e.g. the compute agent's); returns the bind address,
 * or undefined when the metrics are off.
 */
export function installSdkMetrics(log?: { info(o: object, m: string): void }, env: Env = process.env, runtime: RuntimeOptions = {}): string | undefined {
  const bindAddress = sdkMetricsBindAddress(env);
  if (!bindAddress) {
    if (Object.keys(runtime).length > 0) Runtime.install(runtime);
    return undefined;
  }
  Runtime.install({
    ...runtime,
    telemetryOptions: {
      metrics: {
        prometheus: { bindAddress, countersTotalSuffix: true, useSecondsForDurations: true },
      },
    },
  });
  log?.info({ url: `http://${bindAddress}/metrics` }, 'Temporal SDK metrics listening');
  return bindAddress;
}
