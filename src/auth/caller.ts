/**
 * Who is asking: the user, the project the request is scoped to, and the roles the user holds on it.
 * Built from a token (keystone/external modes), from TETHER_AUTH=noauth (admin of the default
 * project), or by the CLI (an operator, or a member of --project).
 */

/** The default project of dev mode and of the CLI's operator (the project_id of servers made without one). */
export const DEFAULT_PROJECT_ID = 'tether';

export const ROLES = ['admin', 'member', 'reader', 'service'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(name: string): name is Role {
  return (ROLES as readonly string[]).includes(name);
}

export interface Caller {
  userId: string;
  userName: string;
  projectId: string;
  projectName: string;
  roles: Role[];
}

/** TETHER_AUTH=noauth: every request is the admin of the default project (as before auth existed). */
export const NOAUTH_CALLER: Caller = Object.freeze({
  userId: 'noauth',
  userName: 'noauth',
  projectId: DEFAULT_PROJECT_ID,
  projectName: DEFAULT_PROJECT_ID,
  roles: ['admin'],
}) as Caller;

/** An operator: admin of every project (the service's caller unless told; the CLI without --project). */
export const OPERATOR: Caller = Object.freeze({
  userId: 'operator',
  userName: 'operator',
  projectId: DEFAULT_PROJECT_ID,
  projectName: DEFAULT_PROJECT_ID,
  roles: ['admin'],
}) as Caller;

/** The CLI: an operator (admin) by default; `--project ID` / TETHER_PROJECT_ID make it a member of that project. */
export function cliCaller(projectId: string | undefined): Caller {
  if (projectId === undefined || projectId === '') return { userId: 'cli', userName: 'cli', projectId: DEFAULT_PROJECT_ID, projectName: DEFAULT_PROJECT_ID, roles: ['admin'] };
  return { userId: 'cli', userName: 'cli', projectId, projectName: projectId, roles: ['member'] };
}
