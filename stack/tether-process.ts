/**
 * One of tether's processes (`node --import tsx workers/<script>`) as a child of the stack, logging
 * to its own file. It restarts by itself when it dies unasked (each such exit recorded in
 * `crashes`), as `npm start` promises; the chaos runner kills, stops and restarts it on purpose.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../src/config.ts';

/** tether's processes: the script in workers/ and the log line that says it serves. */
export const TETHER_SCRIPTS = {
  'control-plane': { script: 'control-plane.ts', ready: '"msg":"control-plane worker polling"' },
  'compute-agent': { script: 'compute-agent.ts', ready: '"msg":"compute agent ready"' },
  'api-server': { script: 'api-server.ts', ready: '"msg":"API listening"' },
  'codec-server': { script: 'codec-server.ts', ready: '"msg":"codec server listening"' },
} as const;
export type TetherScript = keyof typeof TETHER_SCRIPTS;

export interface TetherProcessOptions {
  /** Its name in logs and messages ("compute-agent-b"). */
  name: string;
  script: TetherScript;
  /** Its environment, asked at every start (a restart sees the current proxies, faults, …). */
  env: () => NodeJS.ProcessEnv;
  logFile: string;
  /** Says what happens (one line each). */
  log: (line: string) => void;
  /** Wait for the script's ready line at start (the process logs at info level); otherwise a start returns once it runs. */
  waitReady?: boolean;
  /** Called at every start with the new pid. */
  onStart?: (pid: number) => void;
}

const READY_TIMEOUT_MS = 180_000;

export class TetherProcess {
  child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private killedByUs = false;
  /** Extra environment of the current incarnation (TETHER_FAULTS, …). */
  extraEnv: Record<string, string> = {};
  /** Unexpected exits (not our kill), each "code N" / "signal S" with a time. */
  readonly crashes: string[] = [];
  private restarting: Promise<void> | undefined;

  constructor(private readonly o: TetherProcessOptions) {}

  get name(): string {
    return this.o.name;
  }

  get logFile(): string {
    return this.o.logFile;
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  /**
   * Starts the process (and waits for its ready line, with `waitReady`). A start that dies so is
   * waited for through the restarts.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startOnce();
        return;
      } catch (err) {
        if (!this.restarting || attempt >= 5) throw err;
        await this.settled();
        if (this.pid !== undefined) return;
      }
    }
  }

  private async startOnce(): Promise<void> {
    const { script, ready } = TETHER_SCRIPTS[this.o.script];
    fs.mkdirSync(path.dirname(this.o.logFile), { recursive: true });
    const out = fs.createWriteStream(this.o.logFile, { flags: 'a' });
    out.write(`\n=== ${new Date().toISOString()} start ${this.name}${Object.keys(this.extraEnv).length ? ` ${JSON.stringify(this.extraEnv)}` : ''}\n`);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'workers', script)], {
      cwd: projectRoot,
      env: { ...this.o.env(), ...this.extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.killedByUs = false;
    if (child.pid !== undefined) this.o.onStart?.(child.pid);
    let readyResolve!: () => void;
    let readyReject!: (err: Error) => void;
    const isReady = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    isReady.catch(() => undefined); // awaited only with waitReady
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      out.write(`${line}\n`);
      if (line.includes(ready)) readyResolve();
    });
    child.stderr!.on('data', (chunk: Buffer) => out.write(chunk));
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        out.write(`=== ${new Date().toISOString()} exit ${signal ?? `code ${code}`}\n`);
        out.end();
        readyReject(new Error(`${this.name} exited (${signal ?? `code ${code}`}) before it was ready; see ${this.o.logFile}`));
        resolve();
        if (!this.killedByUs && this.child === child) {
          const what = `${new Date().toISOString()} ${signal ? `signal ${signal}` : `code ${code}`}`;
          this.crashes.push(what);
          this.o.log(`  ! ${this.name} exited by itself (${what}); restarting it in 1 s — see ${this.o.logFile}`);
          this.restarting = sleep(1000).then(() => (this.child === child ? this.startOnce() : undefined)).catch((err: unknown) => {
            this.o.log(`  ! ${this.name} restart failed: ${(err as Error).message}`);
          });
        }
      });
    });
    if (!this.o.waitReady) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        isReady,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.name} not ready within ${READY_TIMEOUT_MS / 1000} s; see ${this.o.logFile}`)), READY_TIMEOUT_MS);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for a self-restart in progress (after an unexpected exit). */
  async settled(): Promise<void> {
    while (this.restarting) {
      const r = this.restarting;
      await r;
      if (this.restarting === r) this.restarting = undefined;
    }
  }

  signal(sig: NodeJS.Signals): void {
    if (this.pid !== undefined) process.kill(this.pid, sig);
  }

  /** Sends `sig` (default SIGKILL) and waits for the exit; no restart follows. */
  async kill(sig: NodeJS.Signals = 'SIGKILL', escalateAfterMs = 15_000): Promise<void> {
    await this.settled();
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.killedByUs = true;
    child.kill(sig);
    const timer = setTimeout(() => child.kill('SIGKILL'), escalateAfterMs);
    await this.exited;
    clearTimeout(timer);
  }
}
