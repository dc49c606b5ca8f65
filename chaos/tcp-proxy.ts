/**
 * A TCP proxy on the loopback that the chaos runner puts between one process and one of its
 * dependencies (Temporal, PostgreSQL), so that it can cut that one link while every other keeps
 * working (chaos/partitions.ts). Modes:
 *   pass  bytes flow both ways;
 *   drop  every open connection is reset and new ones are closed at once (a link that refuses);
 *   hold  connections stay open but no byte moves either way, new ones are accepted and wait (a
 *         link that went silent: the sender's TCP would retransmit); on `pass` everything held flows;
 *   slow  every chunk is delayed by `delayMs` (order kept) — latency, not loss.
 */
import net from 'node:net';

export type ProxyMode = 'pass' | 'drop' | 'hold' | 'slow';

interface Link {
  client: net.Socket;
  upstream: net.Socket | undefined;
  /** Chunks waiting while held, per direction. */
  toUpstream: Buffer[];
  toClient: Buffer[];
  /** Promise chain that keeps delayed chunks in order, per direction. */
  upChain: Promise<void>;
  downChain: Promise<void>;
}

export class TcpProxy {
  private server: net.Server | undefined;
  private readonly links = new Set<Link>();
  private mode: ProxyMode = 'pass';
  private delayMs = 0;
  port = 0;
  /** Connections accepted and reset, for the notes. */
  readonly counts = { accepted: 0, reset: 0 };

  constructor(
    readonly name: string,
    private readonly upstreamPort: number,
    private readonly host = '127.0.0.1',
  ) {}

  async start(): Promise<number> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, this.host, () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  get current(): ProxyMode {
    return this.mode;
  }

  setMode(mode: ProxyMode, o: { delayMs?: number } = {}): void {
    this.mode = mode;
    this.delayMs = o.delayMs ?? 0;
    if (mode === 'drop') {
      for (const l of this.links) this.reset(l);
    }
    if (mode === 'pass' || mode === 'slow') {
      for (const l of this.links) {
        if (!l.upstream) this.connectUpstream(l);
        this.flush(l);
      }
    }
  }

  private accept(client: net.Socket): void {
    this.counts.accepted++;
    client.setNoDelay(true);
    client.on('error', () => undefined);
    if (this.mode === 'drop') {
      this.counts.reset++;
      client.resetAndDestroy();
      return;
    }
    const link: Link = { client, upstream: undefined, toUpstream: [], toClient: [], upChain: Promise.resolve(), downChain: Promise.resolve() };
    this.links.add(link);
    client.on('data', (chunk: Buffer) => this.forward(link, 'up', chunk));
    client.on('close', () => this.close(link));
    if (this.mode !== 'hold') this.connectUpstream(link);
  }

  private connectUpstream(link: Link): void {
    const upstream = net.connect(this.upstreamPort, this.host);
    upstream.setNoDelay(true);
    link.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.on('data', (chunk: Buffer) => this.forward(link, 'down', chunk));
    upstream.on('close', () => this.close(link));
    upstream.on('connect', () => this.flush(link));
  }

  private forward(link: Link, dir: 'up' | 'down', chunk: Buffer): void {
    const queue = dir === 'up' ? link.toUpstream : link.toClient;
    queue.push(chunk);
    if (this.mode === 'pass' || this.mode === 'slow') this.flush(link);
  }

  private flush(link: Link): void {
    for (const dir of ['up', 'down'] as const) {
      const queue = dir === 'up' ? link.toUpstream : link.toClient;
      const target = dir === 'up' ? link.upstream : link.client;
      if (!target || target.connecting || queue.length === 0) continue;
      const chunks = queue.splice(0);
      if (this.mode === 'slow' && this.delayMs > 0) {
        const delay = this.delayMs;
        const chain = (dir === 'up' ? link.upChain : link.downChain).then(() => new Promise<void>((resolve) => setTimeout(() => {
          for (const c of chunks) if (!target.destroyed) target.write(c);
          resolve();
        }, delay)));
        if (dir === 'up') link.upChain = chain;
        else link.downChain = chain;
      } else {
        for (const c of chunks) if (!target.destroyed) target.write(c);
      }
    }
  }

  private reset(link: Link): void {
    this.counts.reset++;
    link.client.resetAndDestroy();
    link.upstream?.resetAndDestroy();
    this.links.delete(link);
  }

  private close(link: Link): void {
    if (!this.links.delete(link)) return;
    link.client.destroy();
    link.upstream?.destroy();
  }

  async stop(): Promise<void> {
    for (const l of this.links) this.reset(l);
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
