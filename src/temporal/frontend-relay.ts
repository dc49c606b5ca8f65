/**
 * Failover between the frontends of a Temporal cluster, for every connection a tether process opens
 * (the client's and the workers' alike). Neither SDK connection takes more than one address (the
 * workers' NativeConnection is Rust core's), so each process runs a relay on 127.0.0.1 and points its
 * connections at it: the relay passes every byte through unchanged (TLS is end to end — mTLS with the
 * frontend itself), sending all connections to one frontend at a time, and switches to the next
 * healthy one when that frontend stops answering:
 *
 *  - a frontend is asked every `healthIntervalMs` (default 1 s: gRPC health check of the
 *    WorkflowService, with the process's own TLS settings); one that fails twice in a row or does not
 *    answer within `healthTimeoutMs` (default 2.5 s) twice in a row, or refuses a connection, is down;
 *  - when the frontend in use is down — killed (its sockets close), hung (SIGSTOP: sockets stay open,
 *    nothing answers) or cut off — the relay closes every connection it carries to it, and the SDKs
 *    reconnect at once, through the relay, to the next healthy frontend. Calls in flight fail with
 *    UNAVAILABLE and are retried by the SDKs (the client's retry interceptor; core's pollers and
 *    completions); Temporal's own shard handover does the rest.
 *
 * Each process starts on a frontend of its own (the process id picks it) so that load spreads, and
 * stays there while it is healthy.
 */
import net from 'node:net';
import { Connection, type TLSConfig } from '@temporalio/client';

export interface FrontendRelayOptions {
  /** host:port of every frontend. */
  frontends: string[];
  /** The connections' TLS (the health checks use it too); absent: plaintext. */
  tls?: TLSConfig;
  apiKey?: string;
  /** Index of the frontend to start on; default process.pid modulo the count. */
  prefer?: number;
  healthIntervalMs?: number;
  healthTimeoutMs?: number;
  /** Told whenever the relay moves to another frontend. */
  onSwitch?: (from: string, to: string, why: string) => void;
}

interface Upstream {
  address: string;
  host: string;
  port: number;
  healthy: boolean;
  /** Consecutive failed health checks. */
  failures: number;
  connection?: Connection;
  sockets: Set<net.Socket>;
}

export class FrontendRelay {
  /** 127.0.0.1:port: what the SDK connections dial. */
  readonly address: string;
  private readonly upstreams: Upstream[];
  private currentIndex: number;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private checking = false;
  /** How many times the relay moved to another frontend. */
  switches = 0;

  private constructor(
    private readonly server: net.Server,
    port: number,
    private readonly o: FrontendRelayOptions,
  ) {
    this.address = `127.0.0.1:${port}`;
    this.upstreams = o.frontends.map((address) => {
      const { host, port: p } = splitAddress(address);
      return { address, host, port: p, healthy: true, failures: 0, sockets: new Set<net.Socket>() };
    });
    this.currentIndex = (o.prefer ?? process.pid) % this.upstreams.length;
    this.timer = setInterval(() => void this.checkAll(), o.healthIntervalMs ?? 1_000);
    this.timer.unref();
  }

  static async start(o: FrontendRelayOptions): Promise<FrontendRelay> {
    if (o.frontends.length === 0) throw new Error('FrontendRelay: no frontend address');
    const server = net.createServer({ pauseOnConnect: true });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as net.AddressInfo).port));
    });
    server.unref();
    const relay = new FrontendRelay(server, port, o);
    server.on('connection', (socket) => relay.accept(socket));
    void relay.checkAll();
    return relay;
  }

  /** host:port of the frontend new connections go to (and, while it is healthy, every connection). */
  get current(): string {
    return this.upstreams[this.currentIndex]!.address;
  }

  /** How many client connections the relay carries to each frontend. */
  connections(): Record<string, number> {
    return Object.fromEntries(this.upstreams.map((u) => [u.address, u.sockets.size]));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.server.close();
    for (const u of this.upstreams) {
      for (const s of u.sockets) s.destroy();
      await u.connection?.close().catch(() => undefined);
    }
  }

  private accept(client: net.Socket, attempt = 0): void {
    if (this.closed) {
      client.destroy();
      return;
    }
    const index = this.pick(attempt);
    const upstream = this.upstreams[index]!;
    const socket = net.connect({ host: upstream.host, port: upstream.port });
    socket.setNoDelay(true);
    client.setNoDelay(true);
    let connected = false;
    socket.once('connect', () => {
      connected = true;
      upstream.sockets.add(client);
      const forget = () => upstream.sockets.delete(client);
      client.once('close', forget);
      socket.pipe(client);
      client.pipe(socket);
      client.resume();
      const end = () => {
        client.destroy();
        socket.destroy();
      };
      client.once('error', end);
      socket.once('error', end);
      client.once('close', end);
      socket.once('close', end);
    });
    socket.once('error', () => {
      if (connected) return;
      socket.destroy();
      this.markDown(upstream, 'refused a connection');
      if (attempt + 1 < this.upstreams.length * 2) this.accept(client, attempt + 1);
      else client.destroy();
    });
  }

  /** The current frontend, or after a failed connect the next one that is believed healthy. */
  private pick(attempt: number): number {
    if (attempt === 0 && this.upstreams[this.currentIndex]!.healthy) return this.currentIndex;
    const n = this.upstreams.length;
    for (let k = 1; k <= n; k++) {
      const i = (this.currentIndex + k) % n;
      if (this.upstreams[i]!.healthy) {
        this.moveTo(i, 'the frontend in use is down');
        return i;
      }
    }
    // None believed healthy: try them in turn.
    return (this.currentIndex + attempt) % n;
  }

  private moveTo(index: number, why: string): void {
    if (index === this.currentIndex) return;
    const from = this.current;
    this.currentIndex = index;
    this.switches++;
    this.o.onSwitch?.(from, this.current, why);
  }

  private markDown(upstream: Upstream, why: string): void {
    const wasHealthy = upstream.healthy;
    upstream.healthy = false;
    if (!wasHealthy) return;
    // Every connection to it is cut: the SDKs reconnect through the relay, to a healthy frontend.
    for (const s of upstream.sockets) s.destroy();
    upstream.sockets.clear();
    if (this.upstreams[this.currentIndex] === upstream) {
      const n = this.upstreams.length;
      for (let k = 1; k < n; k++) {
        const i = (this.currentIndex + k) % n;
        if (this.upstreams[i]!.healthy) {
          this.moveTo(i, `${upstream.address} ${why}`);
          return;
        }
      }
    }
  }

  private async checkAll(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      await Promise.all(this.upstreams.map((u) => this.check(u)));
    } finally {
      this.checking = false;
    }
  }

  private async check(u: Upstream): Promise<void> {
    const timeout = this.o.healthTimeoutMs ?? 2_500;
    try {
      u.connection ??= await Connection.connect({
        address: u.address,
        connectTimeout: timeout,
        ...(this.o.tls ? { tls: this.o.tls } : {}),
        ...(this.o.apiKey ? { apiKey: this.o.apiKey } : {}),
      });
      const connection = u.connection;
      const answer = await connection.withDeadline(Date.now() + timeout, () =>
        connection.healthService.check({ service: 'temporal.api.workflowservice.v1.WorkflowService' }),
      );
      if (answer.status !== 1 /* SERVING */) throw new Error(`health status ${String(answer.status)}`);
      u.failures = 0;
      u.healthy = true;
    } catch (err) {
      const c = u.connection;
      u.connection = undefined;
      void c?.close().catch(() => undefined);
      // One missed answer on a loaded machine is not a dead frontend: two in a row are.
      u.failures++;
      if (!this.closed && u.failures >= 2) this.markDown(u, `failed ${u.failures} health checks in a row (${(err as Error).message.split('\n')[0]})`);
    }
  }
}

function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address.trim());
  if (!m) throw new Error(`Temporal frontend address ${JSON.stringify(address)}: expected host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** The frontends of TEMPORAL_ADDRESS: one host:port, or several separated by commas. */
export function frontendAddresses(temporalAddress: string): string[] {
  return temporalAddress
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a.length > 0);
}
