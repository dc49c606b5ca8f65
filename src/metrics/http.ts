/**
 * A small HTTP listener for worker processes: `GET /metrics` in Prometheus text format.
 * Off unless TETHER_METRICS_PORT is set (TETHER_METRICS_HOST, default 127.0.0.1, is where it binds).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from './registry.ts';
import { registry as tetherRegistry } from './tether-metrics.ts';

type Env = Record<string, string | undefined>;

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(o: { port: number; host?: string; registry?: Registry }): Promise<MetricsServer> {
  const registry = o.registry ?? tetherRegistry;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    registry.metricsText().then(
      (text) => res.writeHead(200, { 'content-type': Registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      () => res.writeHead(500).end(),
    );
  });
  const host = o.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** TETHER_METRICS_PORT / TETHER_METRICS_HOST; undefined when the port is unset, empty or 0 (off). */
export function metricsListenerFromEnv(env: Env = process.env): { host: string; port: number } | undefined {
  const raw = env.TETHER_METRICS_PORT?.trim();
  if (!raw) return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`TETHER_METRICS_PORT must be a port number, got ${JSON.stringify(raw)}`);
  if (port === 0) return undefined;
  return { host: env.TETHER_METRICS_HOST?.trim() || '127.0.0.1', port };
}

/**
 * For a process entry point: starts the listener when configured. A port that cannot be bound is
 * logged, not fatal: metrics must never stop a worker.
 */
export async function startMetricsFromEnv(log: { info(o: object, m: string): void; error(o: object, m: string): void }, env: Env = process.env): Promise<MetricsServer | undefined> {
  const listen = metricsListenerFromEnv(env);
  if (!listen) return undefined;
  try {
    const server = await startMetricsServer(listen);
    log.info({ url: server.url }, 'metrics listening');
    return server;
  } catch (err) {
    log.error({ err, ...listen }, 'cannot serve metrics (TETHER_METRICS_PORT)');
    return undefined;
  }
}
