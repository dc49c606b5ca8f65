/**
 * The chaos runner's partition proxy (chaos/tcp-proxy.ts) on the loopback: bytes pass, a drop resets
 * open connections and refuses new ones, a hold keeps bytes until the link heals (none lost), slow
 * delays them.
 */
import net from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TcpProxy } from '../../chaos/tcp-proxy.ts';

let echo: net.Server;
let proxy: TcpProxy;

beforeAll(async () => {
  echo = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  proxy = new TcpProxy('test', (echo.address() as net.AddressInfo).port);
  await proxy.start();
});

afterAll(async () => {
  await proxy.stop();
  echo.close();
});

async function connect(): Promise<{ socket: net.Socket; received: () => string; closed: Promise<unknown> }> {
  const socket = net.connect(proxy.port, '127.0.0.1');
  socket.on('error', () => undefined);
  let data = '';
  socket.on('data', (c: Buffer) => (data += c.toString()));
  const closed = new Promise((resolve) => socket.on('close', resolve));
  await once(socket, 'connect');
  return { socket, received: () => data, closed };
}

async function until(fn: () => boolean, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

describe('the partition proxy', () => {
  it('passes bytes both ways', async () => {
    const c = await connect();
    c.socket.write('hello');
    expect(await until(() => c.received() === 'hello')).toBe(true);
    c.socket.destroy();
  });

  it('hold: nothing moves until the link heals, then everything held arrives', async () => {
    const c = await connect();
    proxy.setMode('hold');
    c.socket.write('held');
    expect(await until(() => c.received() !== '', 300)).toBe(false);
    proxy.setMode('pass');
    expect(await until(() => c.received() === 'held')).toBe(true);
    c.socket.destroy();
  });

  it('drop: an open connection is reset and a new one closed at once', async () => {
    const open = await connect();
    proxy.setMode('drop');
    await open.closed;
    const fresh = net.connect(proxy.port, '127.0.0.1');
    fresh.on('error', () => undefined);
    await new Promise((resolve) => fresh.on('close', resolve));
    proxy.setMode('pass');
    const again = await connect();
    again.socket.write('back');
    expect(await until(() => again.received() === 'back')).toBe(true);
    again.socket.destroy();
  });

  it('slow: each chunk waits the delay', async () => {
    const c = await connect();
    proxy.setMode('slow', { delayMs: 300 });
    const t0 = Date.now();
    c.socket.write('slow');
    expect(await until(() => c.received() === 'slow')).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550); // delayed on the way there and back
    proxy.setMode('pass');
    c.socket.destroy();
  });
});
