/**
 * How the API authenticates callers (README, "Configuration"):
 *   TETHER_AUTH=noauth (default) | keystone | external
 *   keystone: TETHER_IDENTITY_FILE (users, projects, password hashes), TETHER_TOKEN_TTL_SECONDS
 *   external: TETHER_KEYSTONE_URL and tether's service user TETHER_KEYSTONE_USERNAME / _PASSWORD /
 *             _PROJECT_NAME / _USER_DOMAIN_NAME / _PROJECT_DOMAIN_NAME, TETHER_KEYSTONE_CACHE_SECONDS
 */
import type { KeystoneCredentials } from '../blockstorage/cinder/config.ts';

export type AuthConfig =
  | { mode: 'noauth' }
  | { mode: 'keystone'; identityFile: string; tokenTtlSeconds: number }
  | { mode: 'external'; url: string; credentials: KeystoneCredentials; cacheSeconds: number; timeoutMs: number };

export const AUTH_MODES = ['noauth', 'keystone', 'external'] as const;

function env(name: string, source: NodeJS.ProcessEnv): string | undefined {
  const v = source[name];
  return v === undefined || v === '' ? undefined : v;
}

function required(name: string, mode: string, source: NodeJS.ProcessEnv): string {
  const v = env(name, source);
  if (v === undefined) throw new Error(`TETHER_AUTH=${mode} needs ${name}`);
  return v;
}

function seconds(name: string, fallback: number, source: NodeJS.ProcessEnv): number {
  const raw = env(name, source);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number of seconds ≥ 1, got ${JSON.stringify(raw)}`);
  return n;
}

export function loadAuthConfig(source: NodeJS.ProcessEnv = process.env): AuthConfig {
  const mode = env('TETHER_AUTH', source) ?? 'noauth';
  switch (mode) {
    case 'noauth':
      return { mode };
    case 'keystone':
      return { mode, identityFile: required('TETHER_IDENTITY_FILE', mode, source), tokenTtlSeconds: seconds('TETHER_TOKEN_TTL_SECONDS', 3600, source) };
    case 'external': {
      const url = required('TETHER_KEYSTONE_URL', mode, source);
      return {
        mode,
        url,
        credentials: {
          authUrl: url,
          username: required('TETHER_KEYSTONE_USERNAME', mode, source),
          password: required('TETHER_KEYSTONE_PASSWORD', mode, source),
          projectName: env('TETHER_KEYSTONE_PROJECT_NAME', source) ?? 'service',
          projectId: undefined,
          userDomainName: env('TETHER_KEYSTONE_USER_DOMAIN_NAME', source) ?? 'Default',
          projectDomainName: env('TETHER_KEYSTONE_PROJECT_DOMAIN_NAME', source) ?? 'Default',
        },
        cacheSeconds: seconds('TETHER_KEYSTONE_CACHE_SECONDS', 60, source),
        timeoutMs: 10_000,
      };
    }
    default:
      throw new Error(`TETHER_AUTH must be one of ${AUTH_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  }
}
