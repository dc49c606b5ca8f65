/**
 * The `tether` CLI run as a user runs it (node bin/tether.js) against a test stack's environment:
 * its exit code and output, whether it succeeded or not.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/config.ts';

const run = promisify(execFile);

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runTetherCli(env: Record<string, string>, args: string[], options: { timeoutMs?: number } = {}): Promise<CliRun> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/tether.js', ...args], {
      cwd: projectRoot,
      env: { ...process.env, ...env },
      ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as CliRun;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
