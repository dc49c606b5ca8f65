/**
 * tether's Keystone-compatible identity (TETHER_AUTH=keystone) over a real stack: password
 * tokens, validation, revocation and expiry, tokens stored only as hashes, the same 401 for every
 * wrong credential, no secret in the request logs, and TETHER_AUTH=external validating against it.
 */
import { Writable } from 'node:stream';
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack } from './support/test-stack.ts';
import { ALPHA, PASSWORDS, buildApi, keystoneAuthenticator, login, passwordAuthBody, writeIdentityFile, type IdentityFixture } from './support/identity.ts';
import { buildApiServer, type ApiServer } from '../src/api/server.ts';
import { createAuthenticator, type Authenticator } from '../src/auth/authentication.ts';
import { verifyPassword } from '../src/auth/password-hash.ts';
import { parseIdentity } from '../src/auth/identity-file.ts';
import { createLogger } from '../src/logger.ts';
import { projectRoot } from '../src/config.ts';

vi.setConfig({ testTimeout: 60_000 });

let stack: TestStack;
let identity: IdentityFixture;
let auth: Authenticator;
let api: ApiServer;

const KEYSTONE_401 = { error: { code: 401, title: 'Unauthorized', message: 'The request you have made requires authentication.' } };

async function tokenRows(): Promise<number> {
  const { rows } = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM identity_tokens');
  return Number(rows[0]!.n);
}

beforeAll(async () => {
  stack = await startTestStack();
  identity = await writeIdentityFile();
  auth = await keystoneAuthenticator(stack, identity.file);
  api = await buildApi(stack, auth);
});

afterAll(async () => {
  await api?.close();
  await identity?.dispose();
  await stack?.stop();
});

describe('version documents', () => {
  it('GET /identity/v3 is v3.14, GET /identity lists it (300, as Keystone)', async () => {
    const v3 = await api.inject({ url: '/identity/v3', headers: { host: 'cloud.test:8774' } });
    expect(v3.statusCode).toBe(200);
    expect(v3.json().version).toMatchObject({ id: 'v3.14', status: 'stable', links: [{ rel: 'self', href: 'http://cloud.test:8774/identity/v3/' }] });
    const root = await api.inject({ url: '/identity' });
    expect(root.statusCode).toBe(300);
    expect(root.json().versions.values[0].id).toBe('v3.14');
  });
});

describe('POST /identity/v3/auth/tokens', () => {
  it('password by user name and domain, scoped to a project by name and domain: 201, X-Subject-Token, user, project, roles, catalog', async () => {
    const r = await api.inject({ method: 'POST', url: '/identity/v3/auth/tokens', headers: { host: 'cloud.test:8774' }, payload: passwordAuthBody('alice') });
    expect(r.statusCode).toBe(201);
    const token = r.headers['x-subject-token'] as string;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const t = r.json().token;
    expect(t.user).toMatchObject({ name: 'alice', domain: { id: 'default', name: 'Default' } });
    expect(t.project).toEqual({ id: ALPHA, name: 'alpha', domain: { id: 'default', name: 'Default' } });
    expect(t.roles.map((x: { name: string }) => x.name).sort()).toEqual(['member', 'reader']);
    expect(t.methods).toEqual(['password']);
    const expires = Date.parse(t.expires_at);
    expect(expires - Date.parse(t.issued_at)).toBe(3600_000);
    const url = (type: string) => t.catalog.find((c: { type: string }) => c.type === type)?.endpoints.find((e: { interface: string }) => e.interface === 'public')?.url;
    expect(url('compute')).toBe('http://cloud.test:8774/v2.1');
    expect(url('volumev3')).toBe('http://cloud.test:8774/v3');
    expect(url('block-storage')).toBe('http://cloud.test:8774/v3');
    expect(url('identity')).toBe('http://cloud.test:8774/identity/v3');
    // the token works on the compute API
    expect((await api.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': token } })).statusCode).toBe(200);
  });

  it('password by user id, scoped to a project by id; no scope uses the default project', async () => {
    const first = await api.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: passwordAuthBody('alice') });
    const userId = first.json().token.user.id as string;
    const byId = await api.inject({
      method: 'POST',
      url: '/identity/v3/auth/tokens',
      payload: { auth: { identity: { methods: ['password'], password: { user: { id: userId, password: PASSWORDS.alice } } }, scope: { project: { id: ALPHA } } } },
    });
    expect(byId.statusCode).toBe(201);
    expect(byId.json().token.project.id).toBe(ALPHA);
    const unscoped = await api.inject({
      method: 'POST',
      url: '/identity/v3/auth/tokens?nocatalog',
      payload: { auth: { identity: { methods: ['password'], password: { user: { name: 'alice', domain: { id: 'default' }, password: PASSWORDS.alice } } } } },
    });
    expect(unscoped.statusCode).toBe(201);
    expect(unscoped.json().token.project.name).toBe('alpha');
    expect(unscoped.json().token.catalog).toBeUndefined();
  });

  it('a wrong password, an unknown user, a wrong domain, a project without a role: the same 401, no token issued', async () => {
    const before = await tokenRows();
    const wrongPassword = passwordAuthBody('alice');
    wrongPassword.auth.identity.password.user.password = 'alice-wrong';
    const unknownUser = passwordAuthBody('alice');
    unknownUser.auth.identity.password.user.name = 'mallory';
    const wrongDomain = passwordAuthBody('alice');
    wrongDomain.auth.identity.password.user.domain = { name: 'Other' };
    const noRole = passwordAuthBody('alice', 'beta');
    const noProject = passwordAuthBody('alice', 'gamma');
    for (const payload of [wrongPassword, unknownUser, wrongDomain, noRole, noProject]) {
      const r = await api.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload });
      expect(r.statusCode).toBe(401);
      expect(r.json()).toEqual(KEYSTONE_401);
      expect(r.headers['x-subject-token']).toBeUndefined();
    }
    expect(await tokenRows()).toBe(before);
  });

  it('malformed requests are 400 with Keystone error bodies; other methods 401', async () => {
    const r = await api.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: { auth: {} } });
    expect(r.statusCode).toBe(400);
    expect(r.json().error).toMatchObject({ code: 400, title: 'Bad Request' });
    const token = await api.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: { auth: { identity: { methods: ['token'], token: { id: 'x' } } } } });
    expect(token.statusCode).toBe(401);
    expect((await api.inject({ url: '/identity/v3/users' })).json()).toEqual({ error: { code: 404, title: 'Not Found', message: 'The resource could not be found.' } });
  });

  it('stores only a SHA-256 of each token', async () => {
    const token = await login(api, 'alice');
    const { rows } = await stack.db.query('SELECT * FROM identity_tokens');
    expect(JSON.stringify(rows)).not.toContain(token);
    const { rows: hit } = await stack.db.query(`SELECT 1 FROM identity_tokens WHERE token_sha256 = sha256($1::bytea)`, [Buffer.from(token)]);
    expect(hit).toHaveLength(1);
  });
});

describe('validate and revoke', () => {
  it('GET validates: a user its own tokens, an admin or a service anyone; an unknown token is a 404', async () => {
    const alice = await login(api, 'alice');
    const bob = await login(api, 'bob');
    const ada = await login(api, 'ada');
    const svc = await login(api, 'svc');
    const own = await api.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': alice, 'x-subject-token': alice } });
    expect(own.statusCode).toBe(200);
    expect(own.headers['x-subject-token']).toBe(alice);
    expect(own.json().token.user.name).toBe('alice');
    expect((await api.inject({ method: 'HEAD', url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': alice, 'x-subject-token': alice } })).statusCode).toBe(200);
    expect((await api.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': bob, 'x-subject-token': alice } })).statusCode).toBe(403);
    expect((await api.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': ada, 'x-subject-token': alice } })).json().token.user.name).toBe('alice');
    expect((await api.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': svc, 'x-subject-token': bob } })).json().token.project.name).toBe('beta');
    expect((await api.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': ada, 'x-subject-token': 'not-a-token' } })).statusCode).toBe(404);
    expect((await api.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': 'not-a-token', 'x-subject-token': alice } })).statusCode).toBe(401);
  });

  it('DELETE revokes: 204, then the token is a 404 to validation and a 401 on the API', async () => {
    const alice = await login(api, 'alice');
    const other = await login(api, 'alice');
    expect((await api.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': alice } })).statusCode).toBe(200);
    const revoked = await api.inject({ method: 'DELETE', url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': other, 'x-subject-token': alice } });
    expect(revoked.statusCode).toBe(204);
    expect((await api.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': other, 'x-subject-token': alice } })).statusCode).toBe(404);
    expect((await api.inject({ method: 'DELETE', url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': other, 'x-subject-token': alice } })).statusCode).toBe(404);
    const refused = await api.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': alice } });
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toEqual({ unauthorized: { code: 401, message: 'The request you have made requires authentication.' } });
    expect(refused.headers['www-authenticate']).toMatch(/^Keystone uri=".*\/identity\/v3"$/);
  });

  it('a token expires: usable before its expires_at, a 401 after', async () => {
    const shortAuth = await keystoneAuthenticator(stack, identity.file, 1);
    const shortApi = await buildApi(stack, shortAuth);
    try {
      const r = await shortApi.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: passwordAuthBody('alice') });
      const token = r.headers['x-subject-token'] as string;
      const expiresAt = Date.parse(r.json().token.expires_at);
      expect(expiresAt - Date.parse(r.json().token.issued_at)).toBe(1000);
      const first = await shortApi.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': token } });
      // the machine may be slow: only a request made before expiry must succeed
      if (Date.now() < expiresAt - 200) expect(first.statusCode).toBe(200);
      await expect.poll(async () => (await shortApi.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': token } })).statusCode, { timeout: 10_000, interval: 200 }).toBe(401);
      expect(Date.now()).toBeGreaterThanOrEqual(expiresAt - 50);
    } finally {
      await shortApi.close();
    }
  });
});

describe('the compute and block-storage APIs need a token', () => {
  it('no token, a made-up token: 401 on every route; versions, health stay open', async () => {
    for (const url of ['/v2.1/servers', '/v2.1/servers/detail', `/v2.1/${ALPHA}/servers`, '/v3/volumes', '/v3/volumes/detail', `/v3/${ALPHA}/volumes`]) {
      expect((await api.inject({ url })).statusCode, url).toBe(401);
      expect((await api.inject({ url, headers: { 'x-auth-token': 'made-up' } })).statusCode, url).toBe(401);
    }
    const post = await api.inject({ method: 'POST', url: '/v3/volumes', payload: { volume: { size: 1 } } });
    expect(post.statusCode).toBe(401);
    expect((await stack.blockStorage.listVolumes()).length).toBe(0);
    expect((await api.inject({ url: '/v2.1' })).statusCode).toBe(200);
    expect((await api.inject({ url: '/' })).statusCode).toBe(200);
  });
});

describe('secrets stay out of the logs', () => {
  it('passwords and tokens of a login, a validation and API calls appear in no log line', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const logged = await buildApiServer({
      service: stack.service,
      db: stack.db,
      client: stack.client,
      config: { controlTaskQueue: stack.controlTaskQueue, computeHost: stack.host },
      auth,
      logger: createLogger('api', 'trace', sink),
      limits: { bodyLimit: 114_688, requestTimeoutMs: 30_000, connectionTimeoutMs: 120_000, rateLimit: null },
    });
    try {
      const login1 = await logged.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: passwordAuthBody('alice') });
      const token = login1.headers['x-subject-token'] as string;
      await logged.inject({ url: '/identity/v3/auth/tokens', headers: { 'x-auth-token': token, 'x-subject-token': token } });
      await logged.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': token } });
      const bad = passwordAuthBody('bob');
      bad.auth.identity.password.user.password = 'bob-wrong-password-1234';
      await logged.inject({ method: 'POST', url: '/identity/v3/auth/tokens', payload: bad });
      expect(lines.length).toBeGreaterThan(4);
      const all = lines.join('');
      expect(all).toContain('/identity/v3/auth/tokens');
      for (const secret of [token, PASSWORDS.alice, 'bob-wrong-password-1234']) expect(all).not.toContain(secret);
    } finally {
      await logged.close();
    }
  });
});

describe('TETHER_AUTH=external', () => {
  it('validates tokens at the external Keystone with its service token, caches them, refuses unknown ones', async () => {
    const keystone = `${await api.listen({ host: '127.0.0.1', port: 0 })}/identity`;
    const external = await createAuthenticator(
      {
        mode: 'external',
        url: keystone,
        credentials: { authUrl: keystone, username: 'svc', password: PASSWORDS.svc, projectName: 'service', projectId: undefined, userDomainName: 'Default', projectDomainName: 'Default' },
        cacheSeconds: 60,
        timeoutMs: 10_000,
      },
      stack.db,
    );
    if (external.mode !== 'external') throw new Error('not external');
    const edge = await buildApi(stack, external);
    try {
      const alice = await login(api, 'alice');
      const first = await edge.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': alice } });
      expect(first.statusCode).toBe(200);
      expect(external.keystone.validations).toBe(1);
      expect((await edge.inject({ url: '/v3/volumes', headers: { 'x-auth-token': alice } })).statusCode).toBe(200);
      expect(external.keystone.validations).toBe(1);
      // the URL's project must be the token's
      expect((await edge.inject({ url: `/v3/${'c'.repeat(32)}/volumes`, headers: { 'x-auth-token': alice } })).statusCode).toBe(400);
      expect((await edge.inject({ url: '/v2.1/servers', headers: { 'x-auth-token': 'made-up' } })).statusCode).toBe(401);
      expect((await edge.inject({ url: '/v2.1/servers' })).statusCode).toBe(401);
      // a member of beta sees nothing of alpha there either
      const bob = await login(api, 'bob');
      expect((await edge.inject({ url: '/v2.1/servers?all_tenants=1', headers: { 'x-auth-token': bob } })).statusCode).toBe(403);
    } finally {
      await edge.close();
    }
  });
});

describe('identity file and hash-password', () => {
  it('tether identity hash-password reads stdin and prints a hash that verifies', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile(process.execPath, [`${projectRoot}/bin/tether.js`, 'identity', 'hash-password'], { env: { ...process.env, TETHER_PROJECT_ID: '' } }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
      child.stdin!.end('s3cret pass\n');
    });
    const hash = out.trim();
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(await verifyPassword('s3cret pass', hash)).toBe(true);
    expect(await verifyPassword('s3cret pas', hash)).toBe(false);
  });

  it('refuses plain-text passwords, unknown roles and projects', () => {
    const hash = 'scrypt$4096$8$1$c2FsdHNhbHRzYWx0$' + Buffer.alloc(32, 1).toString('base64');
    expect(() => parseIdentity({ users: [{ name: 'x', password: 'p', password_hash: hash }] })).toThrow(/plain-text password/);
    expect(() => parseIdentity({ projects: [{ name: 'p' }], users: [{ name: 'x', password_hash: hash, roles: { p: 'owner' } }] })).toThrow(/unknown role/);
    expect(() => parseIdentity({ users: [{ name: 'x', password_hash: hash, roles: { q: 'member' } }] })).toThrow(/no project q/);
    expect(() => parseIdentity({ users: [{ name: 'x', password_hash: 'md5$abc' }] })).toThrow(/not a scrypt hash/);
    expect(parseIdentity({ projects: [{ name: 'p' }], users: [{ name: 'x', password_hash: hash, roles: { p: ['reader', 'member'] } }] }).users[0]!.roles.size).toBe(1);
  });
});
