/**
 * Real OpenStack clients against the API: an in-process API server on a free port over a test
 * stack, a clouds.yaml with `auth_type: none` pointing at it, and runners for the Debian `openstack`
 * CLI and python3-openstacksdk scripts.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildApiServer, type ApiServer } from '../../src/api/server.ts';
import type { TestStack } from './test-stack.ts';

export interface RunningApi {
  app: ApiServer;
  /** http://127.0.0.1:PORT */
  url: string;
  close(): Promise<void>;
}

export function buildTestApi(stack: TestStack, config: Partial<{ controlTaskQueue: string; computeHost: string }> = {}): Promise<ApiServer> {
  return buildApiServer({
    service: stack.service,
    db: stack.db,
    client: stack.client,
    config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host, ...config },
  });
}

/** The API over the stack on a free port, or on `port` (a Cinder configured before it needs to know where). */
export async function startTestApi(stack: TestStack, options: { port?: number } = {}): Promise<RunningApi> {
  const app = await buildTestApi(stack);
  const url = await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  return { app, url, close: () => app.close() };
}

export interface Cloud {
  /** Environment that selects the cloud (OS_CLIENT_CONFIG_FILE, OS_CLOUD). */
  env: Record<string, string>;
  dispose(): Promise<void>;
}

/** A clouds.yaml as in docs/reference: no Keystone, the compute endpoint and the block-storage override. */
export async function writeCloud(apiUrl: string): Promise<Cloud> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-clouds-'));
  const file = path.join(dir, 'clouds.yaml');
  await writeFile(
    file,
    ['clouds:', '  tether:', '    auth_type: none', '    auth:', `      endpoint: ${apiUrl}/v2.1`, `    block_storage_endpoint_override: ${apiUrl}/v3`, ''].join('\n'),
  );
  return { env: { OS_CLIENT_CONFIG_FILE: file, OS_CLOUD: 'tether' }, dispose: () => rm(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: Record<string, string>, input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      // a clean environment: no OS_* variables of the machine, no pyenv Python
      { env: { PATH: '/usr/bin:/bin', HOME: os.tmpdir(), LANG: 'C.UTF-8', ...env }, timeout: 120_000, maxBuffer: 10 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs `/usr/bin/openstack ARGS` against the cloud. */
export function openstack(cloud: Cloud, args: string[]): Promise<RunResult> {
  return run('/usr/bin/openstack', args, cloud.env);
}

/** `openstack ARGS -f json`, parsed; throws with the CLI's output when it fails. */
export async function openstackJson<T = unknown>(cloud: Cloud, args: string[]): Promise<T> {
  const r = await openstack(cloud, [...args, '-f', 'json']);
  if (r.code !== 0) throw new Error(`openstack ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Runs a python3 script (python3-openstacksdk from Debian) against the cloud. */
export function python(cloud: Cloud, script: string, args: string[] = []): Promise<RunResult> {
  return run('/usr/bin/python3', ['-', ...args], cloud.env, script);
}
