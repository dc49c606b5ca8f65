/**
 * The one Temporal configuration in deploy/temporal: the server's template (config/tether.yaml), as
 * the server itself renders it from a node's environment, and the dynamic config every Temporal of
 * tether's reads (the cluster's nodes as a file, the dev server as flags).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { projectRoot } from '../src/config.ts';
import { needs } from './support/skips.ts';
import { temporalServerBinaries } from '../stack/temporal-binaries.ts';
import { DYNAMIC_CONFIG_FILE, dynamicConfigFlags } from '../stack/temporal-dev-server.ts';

const run = promisify(execFile);
const { server } = temporalServerBinaries();
const hasServer = fs.existsSync(server);
const configDir = path.join(projectRoot, 'deploy', 'temporal', 'config');

/** `temporal-server render-config` of the template with exactly `env` (plus PATH). */
async function render(env: Record<string, string>): Promise<Record<string, any>> {
  const { stdout } = await run(server, ['--config', configDir, '--env', 'tether', 'render-config'], { env: { PATH: process.env.PATH, ...env } });
  return parseYaml(stdout) as Record<string, any>;
}

const PG = { POSTGRES_SEEDS: 'db.example', DB_PORT: '6543', POSTGRES_USER: 'temporal', POSTGRES_PWD: 'p"a:ss' };

describe('the dev server gets the dynamic config file as flags', () => {
  it('has the latency settings of deploy/temporal/dynamicconfig/tether.yaml', () => {
    const flags = dynamicConfigFlags();
    expect(flags).toContain('history.transferProcessorMaxPollRPS=10000');
    expect(flags).toContain('system.enableActivityEagerExecution=true');
    expect(flags).toContain('matching.numTaskqueueReadPartitions=1');
    // one long poll per instance queue: the frontend's default cap of 1200 per poll kind would be the fleet's cap
    expect(flags).toContain('frontend.namespaceCount=50000');
    expect(flags.filter((f) => f === '--dynamic-config-value')).toHaveLength(flags.length / 2);
  });
});

describe('deploy/temporal/config/tether.yaml rendered by the server', needs('temporal-server', hasServer ? null : `no temporal-server at ${server} (\`npm run setup\` builds it: scripts/build-temporal.sh server)`), () => {
  it('is PostgreSQL in plaintext from the image variables, with the defaults of a single node', async () => {
    const c = await render(PG);
    const sql = c.persistence.datastores.default.sql;
    expect(sql).toMatchObject({ pluginName: 'postgres12', databaseName: 'temporal', connectAddr: 'db.example:6543', user: 'temporal' });
    expect(c.persistence.datastores.visibility.sql.databaseName).toBe('temporal_visibility');
    expect(c.persistence.numHistoryShards).toBe(4);
    expect(c.services.frontend.rpc).toMatchObject({ grpcPort: 7233, bindOnIP: '127.0.0.1' });
    expect(c.clusterMetadata.clusterInformation.active.rpcAddress).toBe('127.0.0.1:7233');
    expect(c.global.tls.frontend.server.certFile).toBe('');
    expect(c.dynamicConfigClient.filepath).toBe('/etc/temporal/config/dynamicconfig/tether.yaml');
  });

  it('is one node of several by its ports, and mTLS everywhere with the TLS variables', async () => {
    const c = await render({
      ...PG,
      FRONTEND_GRPC_PORT: '7333',
      HISTORY_MEMBERSHIP_PORT: '7337',
      PUBLIC_FRONTEND_ADDRESS: '127.0.0.1:7233',
      TEMPORAL_TLS_SERVER_CERT: '/tls/node.pem',
      TEMPORAL_TLS_SERVER_KEY: '/tls/node.key',
      TEMPORAL_TLS_SERVER_CA_CERT: '/tls/ca.pem',
      TEMPORAL_TLS_CLIENT1_CA_CERT: '/tls/clients-ca.pem',
    });
    expect(c.services.frontend.rpc.grpcPort).toBe(7333);
    expect(c.services.history.rpc.membershipPort).toBe(7337);
    expect(c.clusterMetadata.clusterInformation.active.rpcAddress).toBe('127.0.0.1:7233');
    const tls = c.global.tls;
    expect(tls.frontend.server).toMatchObject({ requireClientAuth: true, certFile: '/tls/node.pem', keyFile: '/tls/node.key', clientCaFiles: ['/tls/clients-ca.pem', '/tls/ca.pem'] });
    expect(tls.internode.server).toMatchObject({ requireClientAuth: true, certFile: '/tls/node.pem', clientCaFiles: ['/tls/ca.pem'] });
    expect(tls.internode.client).toMatchObject({ serverName: 'localhost', rootCaFiles: ['/tls/ca.pem'] });
    expect(tls.frontend.client).toMatchObject({ serverName: 'localhost', rootCaFiles: ['/tls/ca.pem'] });
  });

  it('says what is missing', async () => {
    await expect(render({})).rejects.toThrow(/POSTGRES_SEEDS must name the PostgreSQL host/);
    await expect(render({ ...PG, TEMPORAL_TLS_SERVER_CERT: '/tls/node.pem' })).rejects.toThrow(/needs TEMPORAL_TLS_SERVER_KEY and TEMPORAL_TLS_SERVER_CA_CERT/);
  });

  it('the dynamic config file passes the server\'s own validation', async () => {
    const { stdout, stderr } = await run(server, ['validate-dynamic-config', DYNAMIC_CONFIG_FILE]);
    expect(`${stdout}${stderr}`).not.toMatch(/error|unknown|invalid/i);
  });
});
