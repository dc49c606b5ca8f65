/**
 * A measured child process of the benchmark or the scale simulation: forked with an IPC channel,
 * told its config, ready once it answers with its pid; then asked for its stats and for the CPU it
 * spends over a window (request/answer by id), and stopped (SIGKILL past `stopTimeoutMs`).
 * The child's side answers `{ type: 'ready', pid }`, `{ id, stats }` and `{ id, cpuMs, stats }`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

export interface MeasuredChild<Stats> {
  pid: number;
  stats(): Promise<Stats>;
  /** CPU milliseconds the process used over `ms` of wall time, and its stats at the end. */
  idleCpu(ms: number): Promise<{ cpuMs: number; stats: Stats }>;
  stop(): Promise<void>;
}

export interface MeasuredChildOptions<Config> {
  script: string;
  execArgv: string[];
  env: NodeJS.ProcessEnv;
  logFile: string;
  config: Config;
  /** Names the child in the error when it exits before it is ready ("bench child (control)"). */
  label: string;
  stopTimeoutMs: number;
}

export async function forkMeasuredChild<Config, Stats>(o: MeasuredChildOptions<Config>): Promise<MeasuredChild<Stats>> {
  const out = fs.openSync(o.logFile, 'a');
  const child: ChildProcess = fork(o.script, [], { execArgv: o.execArgv, env: o.env, stdio: ['ignore', out, out, 'ipc'] });
  fs.closeSync(out);
  let nextId = 1;
  const pending = new Map<number, (m: unknown) => void>();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${o.label} exited with ${code} before it was ready; see ${o.logFile}`)));
    child.on('message', (m: { type: string; id?: number; pid?: number }) => {
      if (m.type === 'ready') resolve(m.pid!);
      else if (m.id !== undefined) pending.get(m.id)?.(m);
    });
  });
  child.send({ type: 'config', config: o.config });
  const pid = await ready;
  const ask = <T>(msg: { type: string; id: number; ms?: number }): Promise<T> =>
    new Promise((resolve) => {
      pending.set(msg.id, (m) => {
        pending.delete(msg.id);
        resolve(m as T);
      });
      child.send(msg);
    });
  return {
    pid,
    stats: async () => (await ask<{ stats: Stats }>({ type: 'stats', id: nextId++ })).stats,
    idleCpu: (ms) => ask<{ cpuMs: number; stats: Stats }>({ type: 'idle-cpu', id: nextId++, ms }),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), o.stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
