/**
 * tether's own Keystone-compatible identity (TETHER_AUTH=keystone): password authentication of
 * the users in TETHER_IDENTITY_FILE, project-scoped tokens kept hashed in PostgreSQL, validation and
 * revocation. Every authentication failure is the same 401 ("The request you have made requires
 * authentication."), whatever was wrong, and takes as long (a missing user is checked against a decoy hash).
 */
import type { Caller, Role } from './caller.ts';
import type { IdentityDirectory, Project, User, Domain } from './identity-file.ts';
import { decoyHash, verifyPassword } from './password-hash.ts';
import type { TokenStore } from './token-store.ts';

/** An error of the identity API, answered in Keystone's form `{"error": {"code", "title", "message"}}`. */
export class KeystoneError extends Error {
  override readonly name = 'KeystoneError';
  constructor(
    readonly statusCode: number,
    readonly title: string,
    message: string,
  ) {
    super(message);
  }
}

export const unauthorized = () => new KeystoneError(401, 'Unauthorized', 'The request you have made requires authentication.');
const badRequest = (message: string) => new KeystoneError(400, 'Bad Request', message);

/** A valid token, as validation shows it. */
export interface TokenInfo {
  auditId: string;
  methods: string[];
  user: User;
  project: Project;
  /** With the implied ones (admin → member → reader), as Keystone lists them. */
  roles: Role[];
  issuedAt: Date;
  expiresAt: Date;
}

const IMPLIED_ROLES: Record<Role, Role[]> = { admin: ['admin', 'member', 'reader'], member: ['member', 'reader'], reader: ['reader'], service: ['service'] };

function withImplied(roles: Role[]): Role[] {
  return [...new Set(roles.flatMap((r) => IMPLIED_ROLES[r]))];
}

type Json = Record<string, unknown>;

function object(value: unknown, where: string): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw badRequest(`Expecting to find ${where} in the request body.`);
  return value as Json;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw badRequest(`Invalid input for field '${where}': must be a non-empty string.`);
  return value;
}

function domainMatches(domain: Domain, ref: unknown, where: string): boolean {
  const d = object(ref, where);
  const id = optionalString(d.id, `${where}.id`);
  const name = optionalString(d.name, `${where}.name`);
  if (id === undefined && name === undefined) throw badRequest(`Expecting to find id or name in ${where}.`);
  return (id === undefined || id === domain.id) && (name === undefined || name === domain.name);
}

export class KeystoneIdentity {
  constructor(
    private readonly directory: IdentityDirectory,
    private readonly store: TokenStore,
    private readonly options: { tokenTtlSeconds: number },
  ) {}

  /** POST /v3/auth/tokens with the password method. */
  async authenticate(body: unknown): Promise<{ token: string; info: TokenInfo }> {
    const auth = object(object(body, 'auth').auth, 'auth');
    const identity = object(auth.identity, 'identity');
    const methods = identity.methods;
    if (!Array.isArray(methods) || methods.length === 0) throw badRequest('Expecting to find methods in identity.');
    if (methods.length !== 1 || methods[0] !== 'password') throw new KeystoneError(401, 'Unauthorized', 'Attempted to authenticate with an unsupported method.');
    const userRef = object(object(identity.password, 'password').user, 'user');
    const password = userRef.password;
    if (typeof password !== 'string') throw badRequest('Expecting to find password in user.');
    const userId = optionalString(userRef.id, 'user.id');
    const userName = optionalString(userRef.name, 'user.name');
    if (userId === undefined && userName === undefined) throw badRequest('Expecting to find id or name in user.');
    if (userId === undefined && userRef.domain === undefined) throw badRequest('Expecting to find domain in user.');

    const candidates = this.directory.users.filter(
      (u) => (userId === undefined || u.id === userId) && (userName === undefined || u.name === userName) && (userRef.domain === undefined || domainMatches(u.domain, userRef.domain, 'user.domain')),
    );
    const user = candidates.length === 1 ? candidates[0]! : undefined;
    // the same work whether the user exists or not, and the same answer
    const verified = await verifyPassword(password, user?.passwordHash ?? (await decoyHash()));
    if (!user || !verified) throw unauthorized();

    const project = this.scopeOf(user, auth.scope);
    const roles = user.roles.get(project.id) ?? [];
    if (roles.length === 0) throw unauthorized();
    const { token, stored } = await this.store.issue({ userId: user.id, projectId: project.id, methods: ['password'], ttlSeconds: this.options.tokenTtlSeconds });
    return { token, info: { auditId: stored.auditId, methods: stored.methods, user, project, roles: withImplied(roles), issuedAt: stored.issuedAt, expiresAt: stored.expiresAt } };
  }

  /** The project of `scope` (by id, or by name and domain); without a scope, the user's default project. */
  private scopeOf(user: User, scope: unknown): Project {
    if (scope === undefined) {
      const project = this.directory.projects.find((p) => p.id === user.defaultProjectId);
      if (!project) throw badRequest('tether issues project-scoped tokens only: give auth.scope.project (or a default_project for the user).');
      return project;
    }
    const s = object(scope, 'scope');
    if (s.project === undefined) throw badRequest('tether issues project-scoped tokens only: give auth.scope.project.');
    const p = object(s.project, 'scope.project');
    const id = optionalString(p.id, 'scope.project.id');
    const name = optionalString(p.name, 'scope.project.name');
    if (id === undefined && name === undefined) throw badRequest('Expecting to find id or name in scope.project.');
    if (id === undefined && p.domain === undefined) throw badRequest('Expecting to find domain in scope.project.');
    const found = this.directory.projects.filter(
      (x) => (id === undefined || x.id === id) && (name === undefined || x.name === name) && (p.domain === undefined || domainMatches(x.domain, p.domain, 'scope.project.domain')),
    );
    if (found.length !== 1) throw unauthorized();
    return found[0]!;
  }

  /** The token while it is valid (not expired, not revoked, its user still holding a role on its project); null otherwise. */
  async validate(token: string | undefined): Promise<TokenInfo | null> {
    if (!token || token.length > 512) return null;
    const stored = await this.store.find(token);
    if (!stored) return null;
    const user = this.directory.users.find((u) => u.id === stored.userId);
    const project = this.directory.projects.find((p) => p.id === stored.projectId);
    const roles = user?.roles.get(stored.projectId) ?? [];
    if (!user || !project || roles.length === 0) return null;
    return { auditId: stored.auditId, methods: stored.methods, user, project, roles: withImplied(roles), issuedAt: stored.issuedAt, expiresAt: stored.expiresAt };
  }

  revoke(token: string): Promise<boolean> {
    return this.store.revoke(token);
  }
}

export function callerOf(info: TokenInfo): Caller {
  return { userId: info.user.id, userName: info.user.name, projectId: info.project.id, projectName: info.project.name, roles: info.roles };
}
