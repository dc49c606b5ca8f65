/**
 * The production layout (docker-compose.yml), checked without a container engine: `docker-compose
 * config` validates and resolves the file (defaults of every `${VAR:-default}`), and the resolved
 * model is inspected (test/compose-up.test.ts brings it up for real). The one-shot job that
 * registers tether's search attributes (deploy/temporal/setup-namespace.sh) is run for real against
 * a Temporal dev server.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Connection } from '@temporalio/client';
import { loadConfig, projectRoot } from '../src/config.ts';
import * as keys from '../src/temporal/search-attributes.ts';
import { SEARCH_ATTRIBUTES, startTemporalDevServer, type TemporalDevServer } from '../stack/temporal-dev-server.ts';
import { needs } from './support/skips.ts';

const composeFile = path.join(projectRoot, 'docker-compose.yml');
const COMPOSE = 'docker-compose';
const hasCompose = spawnSync(COMPOSE, ['version'], { stdio: 'ignore' }).status === 0;

/** A clean environment (no DATABASE_URL etc. from the shell or the test setup) and an empty env file: the file's own defaults. */
const emptyEnvFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'tether-compose-')), 'empty.env');
writeFileSync(emptyEnvFile, '');

function compose(args: string[], env: Record<string, string> = {}) {
  return spawnSync(COMPOSE, ['-f', composeFile, '--env-file', emptyEnvFile, ...args], {
    cwd: projectRoot,
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
  });
}

interface ServiceModel {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  entrypoint?: string[] | string;
  user?: string;
  environment?: Record<string, string | null>;
  volumes?: Array<string | { type?: string; source?: string; target?: string; read_only?: boolean }>;
  ports?: unknown[];
  depends_on?: Record<string, { condition?: string }> | string[];
  healthcheck?: { test?: string[] | string };
  deploy?: { replicas?: number };
}
interface ComposeModel {
  services: Record<string, ServiceModel>;
}

/**
 * The resolved file as an object: Compose v2 prints JSON (`config --format json`); Debian's
 * docker-compose 1.x prints only YAML, which the Python that runs it (it depends on PyYAML) converts.
 */
function resolvedModel(env: Record<string, string> = {}): { model?: ComposeModel; why?: string } {
  // docker-compose 1.x answers an unknown option with its usage on stderr, exit status 0 and no output.
  const json = compose(['config', '--format', 'json'], env);
  if (json.status === 0 && json.stdout.trimStart().startsWith('{')) return { model: JSON.parse(json.stdout) as ComposeModel };
  const yaml = compose(['config'], env);
  if (yaml.status !== 0) return { why: `docker-compose config failed: ${yaml.stderr}` };
  let python = 'python3';
  try {
    const bin = spawnSync('sh', ['-c', `command -v ${COMPOSE}`], { encoding: 'utf8' }).stdout.trim();
    const shebang = /^#!\s*(\S*python\S*)/.exec(readFileSync(bin, 'utf8').slice(0, 200));
    if (shebang?.[1]) python = shebang[1];
  } catch {
    // a binary docker-compose: try python3
  }
  const conv = spawnSync(python, ['-c', 'import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], {
    input: yaml.stdout,
    encoding: 'utf8',
  });
  if (conv.status !== 0) return { why: `cannot parse docker-compose's YAML output (no --format json, no ${python} with PyYAML): ${conv.stderr}` };
  return { model: JSON.parse(conv.stdout) as ComposeModel };
}

const asList = (v: string[] | string | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function mounts(service: ServiceModel): Array<{ source: string; target: string; readOnly: boolean }> {
  return (service.volumes ?? []).map((v) => {
    if (typeof v !== 'string') return { source: v.source ?? '', target: v.target ?? '', readOnly: v.read_only === true };
    const [source = '', target = '', mode = ''] = v.split(':');
    return { source, target, readOnly: mode.split(',').includes('ro') };
  });
}

function dependsOn(service: ServiceModel): Record<string, string | undefined> {
  const d = service.depends_on ?? {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((name) => [name, undefined]));
  return Object.fromEntries(Object.entries(d).map(([name, v]) => [name, v.condition]));
}

const TETHER_SERVICES = {
  'tether-api': 'workers/api-server.ts',
  'tether-control-plane': 'workers/control-plane.ts',
  'tether-compute-agent': 'workers/compute-agent.ts',
} as const;

const TLS_VARIABLES = ['TEMPORAL_TLS', 'TEMPORAL_TLS_CA', 'TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_SERVER_NAME', 'TEMPORAL_API_KEY'];

/** tether's search attributes as `name=Type` for the Temporal CLI, from the code that uses them. */
const CLI_TYPE: Record<string, string> = { KEYWORD: 'Keyword', TEXT: 'Text', INT: 'Int', DOUBLE: 'Double', BOOL: 'Bool', DATETIME: 'Datetime', KEYWORD_LIST: 'KeywordList' };
const expectedAttributes = Object.values(keys).map((k) => `${k.name}=${CLI_TYPE[k.type]}`);

describe('docker-compose.yml', needs('docker-compose', hasCompose ? null : 'docker-compose is not installed (`npm test` installs it: scripts/test-deps/docker-compose.sh)'), () => {
  let model: ComposeModel;
  const service = (name: string): ServiceModel => {
    const s = model.services[name];
    if (!s) throw new Error(`no service ${name} in docker-compose.yml`);
    return s;
  };

  beforeAll(() => {
    const r = resolvedModel();
    if (!r.model) throw new Error(r.why);
    model = r.model;
  });

  it('is valid', () => {
    const r = compose(['config', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it("has no space inside an exec-form healthcheck's arguments (podman's Docker API splits them there)", () => {
    for (const [name, s] of Object.entries(model.services)) {
      const test = asList(s.healthcheck?.test);
      if (test[0] === 'CMD') expect(test.slice(1).filter((arg) => arg.includes(' ')), name).toEqual([]);
    }
  });

  it('has the production services', () => {
    expect(Object.keys(model.services)).toEqual(
      expect.arrayContaining(['postgresql', 'temporal', 'temporal-ui', 'tether-api', 'tether-control-plane', 'tether-compute-agent']),
    );
  });

  it('runs each tether process from one image, chosen by the command', () => {
    const images = new Set<string | undefined>();
    for (const [name, script] of Object.entries(TETHER_SERVICES)) {
      const s = service(name);
      expect(asList(s.command), name).toEqual(['node', '--import', 'tsx', script]);
      expect(existsSync(path.join(projectRoot, script)), script).toBe(true);
      expect(s.build, name).toBeDefined();
      images.add(s.image);
    }
    expect(images.size).toBe(1);
    expect(existsSync(path.join(projectRoot, 'Dockerfile'))).toBe(true);
  });

  it('gives every tether service DATABASE_URL, TEMPORAL_ADDRESS and the TLS variables from its environment block', () => {
    for (const name of Object.keys(TETHER_SERVICES)) {
      const env = service(name).environment ?? {};
      expect(env.DATABASE_URL, name).toBe('postgres://tether:tether@postgresql:5432/tether');
      expect(env.TEMPORAL_ADDRESS, name).toBe('temporal:7233');
      expect(env.TEMPORAL_NAMESPACE, name).toBe('default');
      expect(env.TETHER_VOLUME_DIR, name).toBe('/var/lib/libvirt/images/tether');
      for (const v of TLS_VARIABLES) expect(env, `${name} ${v}`).toHaveProperty(v);
    }
  });

  it('runs the public images by default and any others from *_IMAGE variables', () => {
    expect(service('postgresql').image).toBe('postgres:16');
    expect(service('temporal').image).toBe('temporalio/server:1.29.1');
    expect(service('temporal-ui').image).toMatch(/^temporalio\/ui:/);
    const r = resolvedModel({
      POSTGRESQL_IMAGE: 'registry.example/postgres:16',
      TEMPORAL_SERVER_IMAGE: 'registry.example/temporal-server:1.29.1',
      TEMPORAL_ADMINTOOLS_IMAGE: 'registry.example/admin-tools:1.29.1',
      TEMPORAL_UI_IMAGE: 'registry.example/ui:2.42.1',
      TETHER_IMAGE: 'registry.example/tether:1',
    });
    if (!r.model) throw new Error(r.why);
    const images = Object.fromEntries(Object.entries(r.model.services).map(([name, s]) => [name, s.image]));
    expect(images).toMatchObject({
      postgresql: 'registry.example/postgres:16',
      'temporal-schema': 'registry.example/admin-tools:1.29.1',
      temporal: 'registry.example/temporal-server:1.29.1',
      'temporal-setup': 'registry.example/admin-tools:1.29.1',
      'temporal-ui': 'registry.example/ui:2.42.1',
      'tether-api': 'registry.example/tether:1',
    });
  });

  it('takes overrides from the environment (${VAR:-default})', () => {
    const r = resolvedModel({
      DATABASE_URL: 'postgres://u:p@db.example:5432/tether',
      TEMPORAL_ADDRESS: 'temporal.example:7233',
      TEMPORAL_TLS_CA: '/etc/tether/tls/ca.pem',
      TEMPORAL_API_KEY: 'k',
      TETHER_COMPUTE_HOST: 'hv-7',
      TETHER_VOLUME_DIR: '/srv/volumes',
    });
    if (!r.model) throw new Error(r.why);
    for (const name of Object.keys(TETHER_SERVICES)) {
      const s = r.model.services[name]!;
      expect(s.environment?.DATABASE_URL).toBe('postgres://u:p@db.example:5432/tether');
      expect(s.environment?.TEMPORAL_ADDRESS).toBe('temporal.example:7233');
      expect(s.environment?.TEMPORAL_TLS_CA).toBe('/etc/tether/tls/ca.pem');
      expect(s.environment?.TEMPORAL_API_KEY).toBe('k');
      expect(mounts(s)).toContainEqual(expect.objectContaining({ source: '/srv/volumes', target: '/srv/volumes' }));
    }
    expect(r.model.services['tether-compute-agent']!.environment?.TETHER_COMPUTE_HOST).toBe('hv-7');
  });

  it('runs two control-plane workers', () => {
    expect(service('tether-control-plane').deploy?.replicas).toBe(2);
  });

  it("lets the compute agent reach the host's libvirt, its volume folder (same path) and its name", () => {
    const agent = service('tether-compute-agent');
    const m = mounts(agent);
    expect(m).toContainEqual(expect.objectContaining({ source: '/var/run/libvirt/libvirt-sock', target: '/var/run/libvirt/libvirt-sock' }));
    expect(m).toContainEqual(expect.objectContaining({ source: '/var/lib/libvirt/images/tether', target: '/var/lib/libvirt/images/tether' }));
    expect(m).toContainEqual({ source: '/etc/hostname', target: '/etc/host-hostname', readOnly: true });
    expect(agent.environment?.LIBVIRT_URI).toBe('qemu:///system');
    // Empty: deploy/docker-entrypoint.sh takes the host's name from /etc/host-hostname.
    expect(agent.environment?.TETHER_COMPUTE_HOST).toBe('');
    expect(readFileSync(path.join(projectRoot, 'deploy/docker-entrypoint.sh'), 'utf8')).toContain('/etc/host-hostname');
    expect(agent.user).toBe('root');
    // The API's /healthz checks this host's agent, so it takes the agent's name the same way.
    const api = service('tether-api');
    expect(mounts(api)).toContainEqual({ source: '/etc/hostname', target: '/etc/host-hostname', readOnly: true });
    expect(api.environment?.TETHER_COMPUTE_HOST).toBe('');
    // Only the compute agent runs as root.
    expect(service('tether-api').user).toBeUndefined();
    expect(service('tether-control-plane').user).toBeUndefined();
  });

  it('runs Temporal on PostgreSQL, which has a healthcheck', () => {
    expect(JSON.stringify(service('postgresql').healthcheck?.test)).toContain('pg_isready');
    const temporal = service('temporal');
    expect(temporal.image).toMatch(/^temporalio\/(server|auto-setup):/);
    expect(temporal.environment).toMatchObject({ DB: 'postgres12', DB_PORT: '5432', POSTGRES_SEEDS: 'postgresql', POSTGRES_USER: 'tether', POSTGRES_PWD: 'tether' });
    // tether's one server configuration, the file the cluster mode runs, not the image's template.
    expect(mounts(temporal)).toContainEqual({ source: path.join(projectRoot, 'deploy/temporal/config'), target: '/etc/temporal/config/tether', readOnly: true });
    expect(asList(temporal.entrypoint)).toEqual(['temporal-server', '--root', '/etc/temporal', '--config', 'config/tether', '--env', 'tether', '--allow-no-auth', 'start']);
    expect(dependsOn(service('temporal-schema'))).toMatchObject({ postgresql: 'service_healthy' });
    expect(dependsOn(temporal)).toMatchObject({ 'temporal-schema': 'service_completed_successfully' });
    for (const name of Object.keys(TETHER_SERVICES)) {
      expect(dependsOn(service(name)), name).toMatchObject({ postgresql: 'service_healthy', 'temporal-setup': 'service_completed_successfully' });
    }
  });

  it("registers tether's search attributes before any tether process starts", () => {
    const setup = service('temporal-setup');
    expect(setup.image).toMatch(/^temporalio\/admin-tools:/);
    expect(String(setup.environment?.TETHER_SEARCH_ATTRIBUTES).split(/\s+/).sort()).toEqual([...expectedAttributes].sort());
    expect(Object.entries(SEARCH_ATTRIBUTES).map(([k, t]) => `${k}=${t}`).sort()).toEqual([...expectedAttributes].sort());
    expect(asList(setup.command).join(' ')).toContain('/etc/tether-setup/setup-namespace.sh');
    expect(mounts(setup)).toContainEqual({ source: path.join(projectRoot, 'deploy/temporal'), target: '/etc/tether-setup', readOnly: true });
    expect(readFileSync(path.join(projectRoot, 'deploy/temporal/setup-namespace.sh'), 'utf8')).toContain('temporal operator search-attribute create');
  });

  it('serves the UI on 8080, decoding through the codec server when TEMPORAL_CODEC_ENDPOINT is set', () => {
    const ui = service('temporal-ui');
    expect(ui.image).toMatch(/^temporalio\/ui:/);
    expect(ui.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(JSON.stringify(ui.ports)).toContain('8080');
    expect(ui.environment).toHaveProperty('TEMPORAL_CODEC_ENDPOINT');
    const codec = service('tether-codec-server');
    expect(codec.command).toEqual(['node', '--import', 'tsx', 'workers/codec-server.ts']);
    expect(codec.environment).toHaveProperty('TETHER_CODEC_TOKEN');
  });

  it('mounts only files that exist in the repository', () => {
    for (const [name, s] of Object.entries(model.services)) {
      for (const { source } of mounts(s)) {
        if (source.startsWith(projectRoot)) expect(existsSync(source), `${name}: ${source}`).toBe(true);
      }
    }
  });
});

const temporalBinary = loadConfig().temporalBinary;
const hasTemporal = existsSync(temporalBinary);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

describe('deploy/temporal/setup-namespace.sh', needs('temporal-cli', hasTemporal ? null : `no Temporal CLI at ${temporalBinary} (\`npm run setup\` builds it)`), () => {
  let server: TemporalDevServer;
  let connection: Connection;
  const script = path.join(projectRoot, 'deploy/temporal/setup-namespace.sh');
  const run = (env: Record<string, string>) =>
    spawnSync('sh', [script], {
      encoding: 'utf8',
      env: { PATH: `${path.dirname(temporalBinary)}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: process.env.HOME ?? '/tmp', TEMPORAL_ADDRESS: server.address, SETUP_ATTEMPTS: '30', ...env },
    });

  beforeAll(async () => {
    server = await startTemporalDevServer({ binary: temporalBinary, port: await freePort() });
    connection = await Connection.connect({ address: server.address });
  });
  afterAll(async () => {
    await connection?.close();
    await server?.stop();
  });

  it('creates the namespace and the Keyword search attributes, and is idempotent', async () => {
    const first = run({ TEMPORAL_NAMESPACE: 'compose-test' });
    expect(first.status, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toContain('namespace compose-test created');
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'compose-test' });
    for (const name of Object.keys(SEARCH_ATTRIBUTES)) expect(customAttributes?.[name], name).toBe(2 /* INDEXED_VALUE_TYPE_KEYWORD */);

    const again = run({ TEMPORAL_NAMESPACE: 'compose-test' });
    expect(again.status, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain('namespace compose-test exists');
    expect(again.stdout).not.toContain('created');
  });

  it('refuses a search attribute that exists with another type', () => {
    const wrong = run({ TEMPORAL_NAMESPACE: 'compose-wrong', TETHER_SEARCH_ATTRIBUTES: 'VolumeId=Text' });
    expect(wrong.status, wrong.stdout + wrong.stderr).toBe(0);
    const r = run({ TEMPORAL_NAMESPACE: 'compose-wrong' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('search attribute VolumeId exists in namespace compose-wrong with type Text; tether needs Keyword');
  });
});
