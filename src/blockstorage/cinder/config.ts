/**
 * Configuration of the Cinder block storage, read from the environment (documented in README.md,
 * "Configuration"). Only read when TETHER_BLOCK_STORAGE=cinder.
 *
 *   CINDER_ENDPOINT     http://127.0.0.1:8776/v3/<project_id>  (a bare …/v3 gets the project id appended;
 *                       `%(project_id)s` / `$(project_id)s` / `{project_id}` are substituted); optional
 *                       with keystone, where the catalog's block-storage endpoint is used
 *   CINDER_AUTH         noauth | keystone (default keystone when OS_AUTH_URL is set, else noauth)
 *   noauth:   CINDER_NOAUTH_USER (default tether), CINDER_PROJECT_ID (32 hex characters)
 *   keystone: OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (or OS_PROJECT_ID),
 *             OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME (both default Default),
 *             OS_REGION_NAME, OS_INTERFACE (default public) for the catalog lookup
 *   CINDER_SERVICE_TOKEN  on | off (default on): calls that need Cinder's service role (deleting an
 *             attachment that is still attached, CVE-2023-2088) carry it — `X-Service-Roles` in noauth,
 *             `X-Service-Token` with keystone: the OS_SERVICE_* user's token when OS_SERVICE_USERNAME is
 *             set (Nova's [service_user]), else tether's own token (its user must have the service role)
 *   CINDER_SERVICE_ROLES  roles claimed in noauth mode (default service)
 *   CINDER_TIMEOUT_MS     per HTTP request (default 20000, below the activities' 30 s start-to-close)
 *   CINDER_WAIT_TIMEOUT_MS  how long createVolume/deleteVolume wait for creating/deleting to finish (default 25000)
 *   CINDER_MULTIATTACH_VOLUME_TYPE  volume type used for `multiattach` volumes (default multiattach)
 */

export const MIN_MICROVERSION = '3.44';

export interface KeystoneCredentials {
  authUrl: string;
  username: string;
  password: string;
  projectName: string | undefined;
  projectId: string | undefined;
  userDomainName: string;
  projectDomainName: string;
}

export type CinderAuthConfig =
  | { kind: 'noauth'; user: string; projectId: string; serviceRoles: string }
  | {
      kind: 'keystone';
      credentials: KeystoneCredentials;
      /** A separate service user (Nova's [service_user]); undefined: tether's own token serves as service token. */
      serviceCredentials: KeystoneCredentials | undefined;
      region: string | undefined;
      interface: 'public' | 'internal' | 'admin';
    };

export interface CinderConfig {
  /** The v3 endpoint, possibly without the project id (then the auth's project id is appended). */
  endpoint: string | undefined;
  auth: CinderAuthConfig;
  /** Send the service role/token on the calls that need it. */
  serviceToken: boolean;
  timeoutMs: number;
  waitTimeoutMs: number;
  multiattachVolumeType: string;
}

type Env = Record<string, string | undefined>;

function get(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function required(env: Env, name: string, why: string): string {
  const v = get(env, name);
  if (v === undefined) throw new Error(`${name} must be set (${why})`);
  return v;
}

function positiveInt(env: Env, name: string, fallback: number): number {
  const raw = get(env, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

function onOff(env: Env, name: string, fallback: boolean): boolean {
  const raw = get(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['on', 'true', '1', 'yes'].includes(raw)) return true;
  if (['off', 'false', '0', 'no'].includes(raw)) return false;
  throw new Error(`${name} must be on or off, got ${JSON.stringify(raw)}`);
}

/** Cinder's router only matches project ids of 32 hex characters (what Keystone issues). */
export const PROJECT_ID = /^[0-9a-f]{32}$/i;

function keystoneCredentials(env: Env, prefix: 'OS_' | 'OS_SERVICE_', fallback?: KeystoneCredentials): KeystoneCredentials {
  const name = (n: string) => `${prefix}${n}`;
  const authUrl = get(env, name('AUTH_URL')) ?? fallback?.authUrl;
  if (!authUrl) throw new Error(`${name('AUTH_URL')} must be set (CINDER_AUTH=keystone)`);
  const projectName = get(env, name('PROJECT_NAME')) ?? (prefix === 'OS_' ? undefined : fallback?.projectName);
  const projectId = get(env, name('PROJECT_ID')) ?? (prefix === 'OS_' ? undefined : fallback?.projectId);
  if (!projectName && !projectId) throw new Error(`${name('PROJECT_NAME')} (or ${name('PROJECT_ID')}) must be set (CINDER_AUTH=keystone)`);
  return {
    authUrl,
    username: required(env, name('USERNAME'), 'CINDER_AUTH=keystone'),
    password: required(env, name('PASSWORD'), 'CINDER_AUTH=keystone'),
    projectName,
    projectId,
    userDomainName: get(env, name('USER_DOMAIN_NAME')) ?? fallback?.userDomainName ?? 'Default',
    projectDomainName: get(env, name('PROJECT_DOMAIN_NAME')) ?? fallback?.projectDomainName ?? 'Default',
  };
}

export function loadCinderConfig(env: Env = process.env): CinderConfig {
  const endpoint = get(env, 'CINDER_ENDPOINT');
  const authKind = (get(env, 'CINDER_AUTH') ?? (get(env, 'OS_AUTH_URL') ? 'keystone' : 'noauth')).toLowerCase();
  let auth: CinderAuthConfig;
  if (authKind === 'noauth') {
    const projectId = required(env, 'CINDER_PROJECT_ID', 'CINDER_AUTH=noauth: the project in the X-Auth-Token and the URLs');
    if (!PROJECT_ID.test(projectId)) throw new Error(`CINDER_PROJECT_ID must be 32 hex characters (Cinder only routes such project ids), got ${JSON.stringify(projectId)}`);
    if (!endpoint) throw new Error('CINDER_ENDPOINT must be set with CINDER_AUTH=noauth (e.g. http://127.0.0.1:8776/v3/<project_id>)');
    auth = {
      kind: 'noauth',
      user: get(env, 'CINDER_NOAUTH_USER') ?? 'tether',
      projectId: projectId.toLowerCase(),
      serviceRoles: get(env, 'CINDER_SERVICE_ROLES') ?? 'service',
    };
  } else if (authKind === 'keystone') {
    const credentials = keystoneCredentials(env, 'OS_');
    const iface = (get(env, 'OS_INTERFACE') ?? 'public').replace(/URL$/i, '').toLowerCase();
    if (iface !== 'public' && iface !== 'internal' && iface !== 'admin') throw new Error(`OS_INTERFACE must be public, internal or admin, got ${JSON.stringify(iface)}`);
    auth = {
      kind: 'keystone',
      credentials,
      serviceCredentials: get(env, 'OS_SERVICE_USERNAME') ? keystoneCredentials(env, 'OS_SERVICE_', credentials) : undefined,
      region: get(env, 'OS_REGION_NAME'),
      interface: iface,
    };
  } else {
    throw new Error(`CINDER_AUTH must be noauth or keystone, got ${JSON.stringify(authKind)}`);
  }
  if (endpoint && !/^https?:\/\//.test(endpoint)) throw new Error(`CINDER_ENDPOINT must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  return {
    endpoint,
    auth,
    serviceToken: onOff(env, 'CINDER_SERVICE_TOKEN', true),
    timeoutMs: positiveInt(env, 'CINDER_TIMEOUT_MS', 20_000),
    waitTimeoutMs: positiveInt(env, 'CINDER_WAIT_TIMEOUT_MS', 25_000),
    multiattachVolumeType: get(env, 'CINDER_MULTIATTACH_VOLUME_TYPE') ?? 'multiattach',
  };
}

/** Which block storage the environment asks for. */
export function blockStorageKind(env: Env = process.env): 'local' | 'cinder' {
  const kind = (get(env, 'TETHER_BLOCK_STORAGE') ?? 'local').toLowerCase();
  if (kind !== 'local' && kind !== 'cinder') throw new Error(`TETHER_BLOCK_STORAGE must be local or cinder, got ${JSON.stringify(kind)}`);
  return kind;
}
