/**
 * Keystone mode for tests: an identity file (YAML) with two projects and users of every role, an
 * API server in keystone mode over a test stack, and password logins.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildApiServer, type ApiServer } from '../../src/api/server.ts';
import { createAuthenticator, type Authenticator } from '../../src/auth/authentication.ts';
import { hashPassword } from '../../src/auth/password-hash.ts';
import type { ApiLimits } from '../../src/api/limits.ts';
import type { TestStack } from './test-stack.ts';

export const ALPHA = 'a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1';
export const BETA = 'b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2';

/** name → password; each has one role (alice, bob: member; rita: reader; ada: admin; svc: service). */
export const PASSWORDS = {
  alice: 'alice-correct-horse-4711',
  bob: 'bob-battery-staple-0815',
  rita: 'rita-reads-only-2342',
  ada: 'ada-lovelace-admin-1815',
  svc: 'svc-validates-tokens-9000',
} as const;
export type TestUser = keyof typeof PASSWORDS;

export interface IdentityFixture {
  file: string;
  dispose(): Promise<void>;
}

/** Hashes are made with small scrypt parameters (N=2^12): the tests log in often; production uses the default 2^15. */
export async function writeIdentityFile(): Promise<IdentityFixture> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tether-identity-'));
  const file = path.join(dir, 'identity.yaml');
  const hash = (p: string) => hashPassword(p, { N: 2 ** 12, r: 8, p: 1 });
  const yaml = [
    'projects:',
    `  - {name: alpha, id: ${ALPHA}}`,
    `  - {name: beta, id: ${BETA}, domain: Default}`,
    '  - {name: service}',
    'users:',
    `  - {name: alice, password_hash: "${await hash(PASSWORDS.alice)}", roles: {alpha: member}, default_project: alpha}`,
    `  - {name: bob, password_hash: "${await hash(PASSWORDS.bob)}", roles: {beta: member}}`,
    `  - {name: rita, password_hash: "${await hash(PASSWORDS.rita)}", roles: {alpha: reader}}`,
    `  - {name: ada, password_hash: "${await hash(PASSWORDS.ada)}", roles: {alpha: admin}}`,
    `  - {name: svc, password_hash: "${await hash(PASSWORDS.svc)}", roles: {service: service}}`,
    '',
  ].join('\n');
  await writeFile(file, yaml);
  return { file, dispose: () => rm(dir, { recursive: true, force: true }) };
}

export async function keystoneAuthenticator(stack: TestStack, identityFile: string, tokenTtlSeconds = 3600): Promise<Authenticator> {
  return createAuthenticator({ mode: 'keystone', identityFile, tokenTtlSeconds }, stack.db);
}

export async function buildApi(stack: TestStack, auth: Authenticator, limits?: Partial<ApiLimits>): Promise<ApiServer> {
  return buildApiServer({
    service: stack.service,
    db: stack.db,
    client: stack.client,
    config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host },
    auth,
    limits: { bodyLimit: 114_688, requestTimeoutMs: 30_000, connectionTimeoutMs: 120_000, rateLimit: null, ...limits },
  });
}

export interface PasswordAuthBody {
  auth: {
    identity: { methods: string[]; password: { user: { name: string; domain: { name?: string; id?: string }; password: string } } };
    scope: { project: { name: string; domain: { name: string } } | { id: string } };
  };
}

export function passwordAuthBody(user: TestUser, project: string | { id: string } = user === 'bob' ? 'beta' : user === 'svc' ? 'service' : 'alpha'): PasswordAuthBody {
  return {
    auth: {
      identity: { methods: ['password'], password: { user: { name: user, domain: { name: 'Default' }, password: PASSWORDS[user] } } },
      scope: { project: typeof project === 'string' ? { name: project, domain: { name: 'Default' } } : project },
    },
  };
}

/** Logs in over `inject` and returns the token. */
export async function login(api: ApiServer, user: TestUser): Promise<string> {
  const r = await api.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: passwordAuthBody(user) });
  if (r.statusCode !== 201) throw new Error(`login ${user}: ${r.statusCode} ${r.body}`);
  return r.headers['x-subject-token'] as string;
}

/** The `openstack` CLI's password-auth flags for a user of the identity file. */
export function passwordFlags(url: string, user: TestUser, project: string): string[] {
  return [
    '--os-auth-url', `${url}/identity/v3`,
    '--os-username', user,
    '--os-password', PASSWORDS[user],
    '--os-project-name', project,
    '--os-user-domain-name', 'Default',
    '--os-project-domain-name', 'Default',
  ];
}
