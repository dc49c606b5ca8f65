/**
 * docker-compose.yml brought up for real, without a registry or a Docker engine: tether's own podman
 * (scripts/compose/podman-env.sh: storage, configuration and networks under ~/.cache/tether/containers)
 * serves the Docker API on a socket, Debian's docker-compose drives it, and the compose file's image
 * variables point at the images scripts/compose/images.sh builds. The file itself is used unchanged.
 *
 * There is no systemd here, so podman never runs healthchecks by itself: this module runs them
 * (`podman healthcheck run`) every 2 s while the stack is up — what `condition: service_healthy` waits for.
 *
 * A stack is one compose project (`tether-compose-<pid>`); `down()` removes its containers, network
 * and volumes, stops the API socket, and takes back what podman's bridge network added to the
 * host's firewall (netavark's chains) when they were not there before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../src/config.ts';
import { findFreePort } from '../../stack/free-port.ts';

const PODMAN = path.join(projectRoot, 'scripts/compose/podman.sh');
const IMAGES = path.join(projectRoot, 'scripts/compose/images.sh');
const COMPOSE_FILE = path.join(projectRoot, 'docker-compose.yml');
const cacheDir = process.env.TETHER_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'tether');
const runDir = process.env.TETHER_PODMAN_RUN ?? '/run/tether-podman';
const PROJECT_PREFIX = 'tether-compose-';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion without blocking the event loop (the healthcheck loop must go on meanwhile). */
export function run(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; onLine?: (line: string) => void } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: projectRoot, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      stdout += text;
      if (opts.onLine) {
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) opts.onLine(line);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          child.kill('SIGTERM');
          stderr += `\n(killed after ${opts.timeoutMs} ms)`;
        }, opts.timeoutMs)
      : undefined;
    child.once('error', reject);
    child.once('close', (code) => {
      if (timer) clearTimeout(timer);
      if (partial && opts.onLine) opts.onLine(partial);
      resolve({ code, stdout, stderr });
    });
  });
}

export const podman = (args: string[], timeoutMs = 120_000) => run(PODMAN, args, { timeoutMs });

async function must(what: string, result: Promise<RunResult>): Promise<string> {
  const r = await result;
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  return r.stdout;
}

/** Builds (or reuses) the local images and returns the compose variables that name them. */
export async function buildImages(log: (line: string) => void): Promise<Record<string, string>> {
  const r = await run('bash', [IMAGES], { timeoutMs: 30 * 60_000, onLine: log });
  if (r.code !== 0) throw new Error(`scripts/compose/images.sh failed: ${r.stderr.trim().slice(-3000)}`);
  return parseEnvFile(fs.readFileSync(path.join(cacheDir, 'containers', 'images.env'), 'utf8'));
}

function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Answers once the Docker-compatible API on the socket responds to /_ping. */
function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('error', () => resolve(false));
    req.once('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/** The firewall's chain names per table (iptables-save), to take back what netavark adds. */
async function firewallChains(): Promise<Map<string, Set<string>>> {
  const chains = new Map<string, Set<string>>();
  const r = await run('iptables-save', []).catch(() => undefined);
  if (!r || r.code !== 0) return chains;
  let table = '';
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1);
      chains.set(table, new Set());
    } else if (line.startsWith(':')) chains.get(table)?.add(line.slice(1).split(' ')[0]!);
  }
  return chains;
}

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
const readIpForward = () => fs.readFileSync(IP_FORWARD, 'utf8').trim();

/**
 * A bridge network turns on IPv4 forwarding and leaves it on. Turns it off again when it was off
 * before and nothing else on the host may need it now: no active libvirt network (libvirt turns it
 * on for its NAT networks) and no firewall chain of anyone else's was added meanwhile.
 */
async function restoreIpForward(before: string, chainsBefore: Map<string, Set<string>>): Promise<boolean> {
  if (before !== '0' || readIpForward() !== '1') return false;
  for (const [table, names] of await firewallChains()) {
    if ([...names].some((c) => !chainsBefore.get(table)?.has(c))) return false;
  }
  const networks = await run('virsh', ['-c', 'qemu:///system', 'net-list', '--name']).catch(() => undefined);
  if (networks?.code === 0 && networks.stdout.trim() !== '') return false;
  fs.writeFileSync(IP_FORWARD, '0');
  return true;
}

/** Removes the NETAVARK chains that were not there before (they are empty once the network is gone). */
async function restoreFirewall(before: Map<string, Set<string>>): Promise<string[]> {
  const after = await firewallChains();
  const added: string[] = [];
  for (const [table, names] of after) {
    const mine = [...names].filter((c) => c.startsWith('NETAVARK') && !before.get(table)?.has(c));
    if (mine.length === 0) continue;
    // First every rule that jumps to one of them (from the built-in chains), then the chains.
    const rules = await run('iptables', ['-t', table, '-S']);
    for (const rule of rules.stdout.split('\n')) {
      const m = /^-A (\S+) (.*)$/.exec(rule);
      // The rule as iptables prints it, quotes included (comments), goes back through a shell.
      if (m && mine.some((c) => rule.endsWith(`-j ${c}`)) && !mine.includes(m[1]!)) await run('sh', ['-c', `iptables -t ${table} -D ${m[1]} ${m[2]}`]);
    }
    for (const chain of mine) await run('iptables', ['-t', table, '-F', chain]);
    for (const chain of mine) {
      const r = await run('iptables', ['-t', table, '-X', chain]);
      if (r.code === 0) added.push(`${table}/${chain}`);
    }
  }
  return added;
}

/** Polls `check` (true, or what is still wrong) every 500 ms until true; fails with the last answer. */
async function waitFor(what: string, timeoutMs: number, check: () => Promise<true | string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await check();
    if (answer === true) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}: ${answer}`);
    await sleep(500);
  }
}

export interface ComposeStackOptions {
  /** Lines of progress (image builds, compose). */
  log: (line: string) => void;
  /** Extra compose variables. */
  env?: Record<string, string>;
}

export interface Leftovers {
  containers: string[];
  volumes: string[];
  networks: string[];
}

export interface DownResult {
  /** netavark's chains (table/chain) that the bridge network added and down() removed. */
  firewallChainsRemoved: string[];
  /** Chains of netavark's that are still there and were not before the stack came up. */
  firewallChainsLeft: string[];
  /** IPv4 forwarding was off before, podman turned it on, and down() turned it off again. */
  ipForwardRestored: boolean;
}

export interface ComposeStack {
  project: string;
  /** The variables compose ran with (images, ports, volume folder, compute host). */
  env: Record<string, string>;
  apiUrl: string;
  volumeDir: string;
  computeHost: string;
  /** Seconds: building/reusing the images, then `up -d` until the API is healthy. */
  timings: { images: number; up: number; down?: number };
  /** docker-compose with this project's file, name and variables. */
  compose(args: string[], timeoutMs?: number): Promise<RunResult>;
  /** Runs a command in a service's (first) container. */
  exec(service: string, command: string[]): Promise<RunResult>;
  /** Recent logs of every service, for a failure message. */
  logs(tail?: number): Promise<string>;
  /** What of this project is still in podman. */
  leftovers(): Promise<Leftovers>;
  /** `down -v`, stop the healthchecks and the API socket, take back the firewall chains. Idempotent. */
  down(): Promise<DownResult>;
}

export async function startComposeStack(opts: ComposeStackOptions): Promise<ComposeStack> {
  const project = `${PROJECT_PREFIX}${process.pid}`;
  const t0 = performance.now();
  const images = await buildImages((line) => opts.log(line));
  const tImages = (performance.now() - t0) / 1000;

  fs.mkdirSync(runDir, { recursive: true });
  const socketPath = path.join(runDir, `${project}.sock`);
  fs.rmSync(socketPath, { force: true });
  const firewallBefore = await firewallChains();
  const ipForwardBefore = readIpForward();

  const volumeDir = `/var/lib/libvirt/images/${project}`;
  const computeHost = project;
  const [pg, temporal, ui, api, codec] = await Promise.all([findFreePort(), findFreePort(), findFreePort(), findFreePort(), findFreePort()]);
  const env: Record<string, string> = {
    ...images,
    POSTGRES_PUBLISH: `127.0.0.1:${pg}`,
    TEMPORAL_PORT: String(temporal),
    TEMPORAL_UI_PORT: String(ui),
    TETHER_API_PORT: String(api),
    TETHER_CODEC_PUBLISH: `127.0.0.1:${codec}`,
    TETHER_VOLUME_DIR: volumeDir,
    TETHER_COMPUTE_HOST: computeHost,
    ...opts.env,
  };
  // No .env of the checkout: only these variables and the file's defaults.
  const emptyEnvFile = path.join(runDir, `${project}.env`);
  fs.writeFileSync(emptyEnvFile, '');
  const composeEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: process.env.HOME ?? '/root',
    DOCKER_HOST: `unix://${socketPath}`,
    // Compose's API calls wait at most 60 s by default; a loaded 2-core machine needs more.
    COMPOSE_HTTP_TIMEOUT: '300',
    ...env,
  };
  const compose = (args: string[], timeoutMs = 10 * 60_000) =>
    run('docker-compose', ['-p', project, '-f', COMPOSE_FILE, '--env-file', emptyEnvFile, ...args], { env: composeEnv, timeoutMs });

  let service: ChildProcess | undefined = spawn(PODMAN, ['system', 'service', '--time=0', `unix://${socketPath}`], {
    cwd: projectRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let serviceErr = '';
  service.stderr?.on('data', (c: Buffer) => (serviceErr = (serviceErr + c.toString('utf8')).slice(-4000)));
  const killService = () => service?.kill('SIGTERM');
  process.once('exit', killService);

  let healthLoop: Promise<void> | undefined;
  let stopped = false;
  let downResult: DownResult | undefined;

  const leftovers = async (): Promise<Leftovers> => {
    const label = `label=com.docker.compose.project=${project}`;
    const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);
    const [c, v, n] = await Promise.all([
      must('podman ps', podman(['ps', '-a', '--filter', label, '--format', '{{.Names}}'])),
      must('podman volume ls', podman(['volume', 'ls', '--filter', label, '--format', '{{.Name}}'])),
      must('podman network ls', podman(['network', 'ls', '--format', '{{.Name}}'])),
    ]);
    return { containers: lines(c), volumes: lines(v), networks: lines(n).filter((name) => name.startsWith(project)) };
  };

  const down = async () => {
    if (downResult) return downResult;
    const t = performance.now();
    if (service && service.exitCode === null) {
      const r = await compose(['down', '-v', '--remove-orphans', '--timeout', '60']);
      if (r.code !== 0) opts.log(`compose down failed: ${r.stderr.trim()}`);
    }
    stopped = true;
    await healthLoop;
    if (service && service.exitCode === null) {
      const exited = new Promise((resolve) => service!.once('exit', resolve));
      service.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
    }
    service = undefined;
    process.removeListener('exit', killService);
    fs.rmSync(socketPath, { force: true });
    fs.rmSync(emptyEnvFile, { force: true });
    const firewallChainsRemoved = await restoreFirewall(firewallBefore);
    const firewallChainsLeft = [...(await firewallChains())].flatMap(([table, names]) =>
      [...names].filter((c) => c.startsWith('NETAVARK') && !firewallBefore.get(table)?.has(c)).map((c) => `${table}/${c}`),
    );
    const ipForwardRestored = await restoreIpForward(ipForwardBefore, firewallBefore);
    stack.timings.down = (performance.now() - t) / 1000;
    downResult = { firewallChainsRemoved, firewallChainsLeft, ipForwardRestored };
    return downResult;
  };

  const stack: ComposeStack = {
    project,
    env,
    apiUrl: `http://127.0.0.1:${api}`,
    volumeDir,
    computeHost,
    timings: { images: tImages, up: 0 },
    compose,
    exec: async (svc, command) => {
      const id = (await must(`docker-compose ps -q ${svc}`, compose(['ps', '-q', svc]))).split('\n')[0]?.trim();
      if (!id) throw new Error(`no container for ${svc}`);
      return podman(['exec', id, ...command]);
    },
    logs: async (tail = 40) => {
      const r = await compose(['logs', '--no-color', '--tail', String(tail)], 60_000);
      return r.stdout + r.stderr;
    },
    leftovers,
    down,
  };

  try {
    const deadline = Date.now() + 30_000;
    while (!(await ping(socketPath))) {
      if (service.exitCode !== null || Date.now() > deadline) throw new Error(`podman system service did not answer on ${socketPath}: ${serviceErr}`);
      await sleep(100);
    }

    healthLoop = (async () => {
      for (let round = 0; !stopped; round++) {
        const r = await podman(['ps', '--filter', `label=com.docker.compose.project=${project}`, '--format', '{{.ID}} {{.Status}}'], 30_000).catch(() => undefined);
        for (const line of r?.stdout.split('\n') ?? []) {
          const [id, ...rest] = line.trim().split(' ');
          // Containers with a healthcheck show (starting), (healthy) or (unhealthy) in their status;
          // a healthy one is checked every 10 s, the others every 2 s.
          const health = /\((starting|healthy|unhealthy)\)/.exec(rest.join(' '))?.[1];
          if (!id || !health || stopped || (health === 'healthy' && round % 5 !== 0)) continue;
          const t = performance.now();
          const hc = await podman(['healthcheck', 'run', id], 60_000).catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }));
          // TETHER_COMPOSE_DEBUG=1 shows every healthcheck run.
          if (process.env.TETHER_COMPOSE_DEBUG) opts.log(`healthcheck ${id} (${health}): exit ${hc.code} in ${Math.round(performance.now() - t)} ms ${hc.stdout.trim()} ${hc.stderr.trim().slice(-200)}`);
        }
        for (let i = 0; i < 20 && !stopped; i++) await sleep(100);
      }
    })();

    const tUp = performance.now();
    // podman 4.3 sometimes loses a race with a one-shot container that exits at once ("read
    // /proc/N/cgroup: no such process"); `up` is idempotent, so it is run again, twice at most.
    for (let attempt = 1; ; attempt++) {
      const up = await compose(['up', '-d', '--no-build']);
      if (up.code === 0) break;
      if (attempt === 3 || !/no such process/.test(up.stderr)) {
        throw new Error(`docker-compose up failed: ${up.stderr.trim().slice(-3000)}\n${await stack.logs()}`);
      }
      opts.log(`docker-compose up: ${up.stderr.trim().split('\n').pop()} — running it again`);
    }
    try {
      await waitFor(`GET ${stack.apiUrl}/healthz to answer 200`, 240_000, async () => {
        const res = await fetch(`${stack.apiUrl}/healthz`).catch((err: Error) => err);
        if (res instanceof Error) return res.message;
        return res.status === 200 ? true : `${res.status} ${await res.text()}`;
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await stack.logs()}`);
    }
    // Ready means every healthcheck passes too (the API's own may have failed while it started).
    await waitFor('every container with a healthcheck to be healthy', 60_000, async () => {
      const r = await podman(['ps', '--filter', `label=com.docker.compose.project=${project}`, '--format', '{{.Names}} {{.Status}}']);
      const notYet = r.stdout.split('\n').filter((l) => /\((starting|unhealthy)\)/.test(l));
      return r.code === 0 && notYet.length === 0 ? true : notYet.join('; ') || r.stderr || 'no answer';
    });
    stack.timings.up = (performance.now() - tUp) / 1000;
    return stack;
  } catch (err) {
    await down().catch(() => undefined);
    fs.rmSync(volumeDir, { recursive: true, force: true });
    throw err;
  }
}
