/**
 * workers/compute-agent.ts as a process of its own, for tests that stop, continue, kill and restart a
 * compute host's agent the way an operator's machine would (SIGSTOP, SIGCONT, SIGKILL).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../../src/config.ts';
import type { TestStack } from './test-stack.ts';

export interface AgentProcess {
  host: string;
  child: ChildProcess;
  /** Everything it printed so far. */
  output(): string;
  /** SIGTERM (or the given signal) and wait for it to exit; a stopped process is continued first. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts an agent for `host` on the stack's database, Temporal and libvirt; resolves once it is ready. */
export async function startAgentProcess(stack: TestStack, host: string, env: Record<string, string> = {}): Promise<AgentProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'workers', 'compute-agent.ts')], {
    cwd: projectRoot,
    env: { ...process.env, ...stack.env, TETHER_COMPUTE_HOST: host, TETHER_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`compute agent ${host} not ready after 120 s: ${output}`)), 120_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('compute agent ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', read);
    child.stderr!.on('data', read);
    child.once('exit', (code) => reject(new Error(`compute agent ${host} exited (${code}): ${output}`)));
  });
  return {
    host,
    child,
    output: () => output,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGCONT');
      child.kill(signal);
      await exited;
    },
  };
}
