/**
 * Users and projects of tether's own Keystone-compatible identity, from TETHER_IDENTITY_FILE
 * (JSON or YAML). Example (docs/security.md):
 *
 *   projects:
 *     - {name: demo}                                   # id: derived from domain and name unless given
 *     - {name: ops, id: 5a1c…, domain: Default}
 *   users:
 *     - name: alice
 *       password_hash: "scrypt$32768$8$1$…"           # `tether identity hash-password`
 *       roles: {demo: member}                          # project name or id → admin | member | reader | service (or a list)
 *       default_project: demo                          # optional: the scope of a token asked without one
 *
 * Domains are names (default `Default`, id `default`). Everything is checked when the file is
 * loaded: a bad file stops the API at start-up with the reason, never at the first login.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import YAML from 'yaml';
import { isRole, type Role } from './caller.ts';
import { parsePasswordHash } from './password-hash.ts';

export interface Domain {
  id: string;
  name: string;
}

export interface Project {
  id: string;
  name: string;
  domain: Domain;
}

export interface User {
  id: string;
  name: string;
  domain: Domain;
  passwordHash: string;
  /** Project id → roles on it. */
  roles: Map<string, Role[]>;
  defaultProjectId: string | undefined;
}

export interface IdentityDirectory {
  projects: Project[];
  users: User[];
}

export const DEFAULT_DOMAIN: Domain = { id: 'default', name: 'Default' };

function domainNamed(name: string | undefined): Domain {
  if (name === undefined || name === DEFAULT_DOMAIN.name || name === DEFAULT_DOMAIN.id) return DEFAULT_DOMAIN;
  return { id: derivedId('domain', name), name };
}

/** A stable 32-hex id (Keystone's form) for an entry the file gives no id. */
function derivedId(kind: string, ...parts: string[]): string {
  return createHash('sha256').update([kind, ...parts].join('\u0000')).digest('hex').slice(0, 32);
}

function fail(file: string, what: string): never {
  throw new Error(`TETHER_IDENTITY_FILE ${file}: ${what}`);
}

function text(file: string, where: string, value: unknown, required: boolean): string | undefined {
  if (value === undefined || value === null) {
    if (required) fail(file, `${where} is required`);
    return undefined;
  }
  if (typeof value !== 'string' || value.trim() === '') fail(file, `${where} must be a non-empty string`);
  return value;
}

function entries(file: string, doc: Record<string, unknown>, key: string): Record<string, unknown>[] {
  const list = doc[key] ?? [];
  if (!Array.isArray(list)) fail(file, `${key} must be a list`);
  return list.map((item, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) fail(file, `${key}[${i}] must be a mapping`);
    return item as Record<string, unknown>;
  });
}

/** Checks and normalizes a parsed identity document (`file` only names it in errors). */
export function parseIdentity(doc: unknown, file = '(inline)'): IdentityDirectory {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) fail(file, 'must be a mapping with projects and users');
  const root = doc as Record<string, unknown>;
  const projects: Project[] = entries(file, root, 'projects').map((p, i) => {
    const name = text(file, `projects[${i}].name`, p.name, true)!;
    const domain = domainNamed(text(file, `projects[${i}].domain`, p.domain, false));
    return { id: text(file, `projects[${i}].id`, p.id, false) ?? derivedId('project', domain.id, name), name, domain };
  });
  const seen = new Set<string>();
  for (const p of projects) {
    for (const key of [`id:${p.id}`, `name:${p.domain.id}/${p.name}`]) {
      if (seen.has(key)) fail(file, `project ${p.name} appears twice (${key})`);
      seen.add(key);
    }
  }
  const projectRef = (where: string, ref: string, userDomain: Domain): Project => {
    const found = projects.filter((p) => p.id === ref);
    if (found.length === 1) return found[0]!;
    const byName = projects.filter((p) => p.name === ref);
    const sameDomain = byName.filter((p) => p.domain.id === userDomain.id);
    if (sameDomain.length === 1) return sameDomain[0]!;
    if (byName.length === 1) return byName[0]!;
    return fail(file, `${where}: no project ${ref}${byName.length > 1 ? ' (ambiguous name: use the id)' : ''}`);
  };
  const users: User[] = entries(file, root, 'users').map((u, i) => {
    const at = `users[${i}]`;
    const name = text(file, `${at}.name`, u.name, true)!;
    const domain = domainNamed(text(file, `${at}.domain`, u.domain, false));
    const passwordHash = text(file, `${at}.password_hash`, u.password_hash, true)!;
    if (u.password !== undefined) fail(file, `${at} has a plain-text password: store password_hash (tether identity hash-password) instead`);
    if (!parsePasswordHash(passwordHash)) fail(file, `${at}.password_hash is not a scrypt hash made by tether identity hash-password`);
    const roles = new Map<string, Role[]>();
    const rawRoles = u.roles ?? {};
    if (rawRoles === null || typeof rawRoles !== 'object' || Array.isArray(rawRoles)) fail(file, `${at}.roles must map project names or ids to roles`);
    for (const [ref, value] of Object.entries(rawRoles as Record<string, unknown>)) {
      const project = projectRef(`${at}.roles`, ref, domain);
      const names = Array.isArray(value) ? value : [value];
      for (const role of names) {
        if (typeof role !== 'string' || !isRole(role)) fail(file, `${at}.roles.${ref}: unknown role ${JSON.stringify(role)} (admin, member, reader or service)`);
      }
      roles.set(project.id, [...new Set([...(roles.get(project.id) ?? []), ...(names as Role[])])]);
    }
    const defaultRef = text(file, `${at}.default_project`, u.default_project, false);
    const defaultProjectId = defaultRef === undefined ? undefined : projectRef(`${at}.default_project`, defaultRef, domain).id;
    return { id: text(file, `${at}.id`, u.id, false) ?? derivedId('user', domain.id, name), name, domain, passwordHash, roles, defaultProjectId };
  });
  const userKeys = new Set<string>();
  for (const u of users) {
    for (const key of [`id:${u.id}`, `name:${u.domain.id}/${u.name}`]) {
      if (userKeys.has(key)) fail(file, `user ${u.name} appears twice (${key})`);
      userKeys.add(key);
    }
  }
  return { projects, users };
}

export async function loadIdentityFile(file: string): Promise<IdentityDirectory> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    return fail(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let doc: unknown;
  try {
    // YAML 1.2 is a superset of JSON: one parser reads both
    doc = YAML.parse(raw);
  } catch (err) {
    return fail(file, `is neither JSON nor YAML (${(err as Error).message.split('\n')[0]})`);
  }
  return parseIdentity(doc, file);
}
