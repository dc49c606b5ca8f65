/**
 * Waiting for a Temporal process we started (the dev server, a node of the cluster) until its
 * frontend answers: its port open, then GetSystemInfo (over mTLS for the cluster). Fails at once
 * when the process exits.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection, type TLSConfig } from '@temporalio/client';

export interface FrontendWait {
  /** What answers there, for the error: "temporal-1", "Temporal dev server". */
  name: string;
  /** host:port of the frontend. */
  address: string;
  tls?: TLSConfig;
  /** Date.now() by which it must answer. */
  deadline: number;
  /** True once the process has exited (then waiting stops). */
  exited: () => boolean;
}

export async function waitForFrontend(w: FrontendWait): Promise<void> {
  const { host, port } = hostAndPort(w.address);
  let last: unknown;
  while (Date.now() < w.deadline) {
    if (w.exited()) throw new Error(`${w.name} exited during startup`);
    if (!(await tcpOpen(host, port))) {
      await sleep(50);
      continue;
    }
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address: w.address, ...(w.tls ? { tls: w.tls } : {}), connectTimeout: 5_000 });
      await connection.withDeadline(Date.now() + 5_000, () => connection!.workflowService.getSystemInfo({}));
      return;
    } catch (err) {
      last = err;
      await sleep(100);
    } finally {
      await connection?.close().catch(() => undefined);
    }
  }
  throw new Error(`${w.name}'s frontend at ${w.address} did not answer: ${(last as Error | undefined)?.message ?? 'port closed'}`);
}

function hostAndPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(i + 1)) };
}

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
