/**
 * Who a token belongs to. noauth: the admin of the default project, always. keystone: the token must
 * be a live token of tether's identity; external: one that the external Keystone validates. Plain
 * functions: the HTTP glue (the hook that reads X-Auth-Token and answers 401) is src/api/authentication.ts.
 */
import type { Database } from '../db/database.ts';
import type { AuthConfig } from './auth-config.ts';
import { NOAUTH_CALLER, type Caller } from './caller.ts';
import { ExternalKeystone } from './external-keystone.ts';
import { loadIdentityFile } from './identity-file.ts';
import { KeystoneIdentity, callerOf } from './keystone-identity.ts';
import { TokenStore } from './token-store.ts';

export type Authenticator =
  | { mode: 'noauth' }
  | { mode: 'keystone'; identity: KeystoneIdentity }
  | { mode: 'external'; keystone: ExternalKeystone };

export const NOAUTH: Authenticator = { mode: 'noauth' };

/** Reads the identity file (keystone) or prepares the external validator; fails at start-up on a bad configuration. */
export async function createAuthenticator(config: AuthConfig, db: Database): Promise<Authenticator> {
  switch (config.mode) {
    case 'noauth':
      return NOAUTH;
    case 'keystone':
      return { mode: 'keystone', identity: new KeystoneIdentity(await loadIdentityFile(config.identityFile), new TokenStore(db), { tokenTtlSeconds: config.tokenTtlSeconds }) };
    case 'external':
      return { mode: 'external', keystone: new ExternalKeystone(config) };
  }
}

/** The caller a token stands for; null when the token is missing or not valid (noauth: always the admin). */
export async function callerOfToken(auth: Authenticator, token: string | undefined): Promise<Caller | null> {
  switch (auth.mode) {
    case 'noauth':
      return NOAUTH_CALLER;
    case 'keystone': {
      const info = await auth.identity.validate(token);
      return info ? callerOf(info) : null;
    }
    case 'external':
      return auth.keystone.validate(token);
  }
}
