/**
 * HTTP to Cinder's v3 API with Node's fetch: a timeout on every request (AbortSignal.timeout), the
 * microversion header, auth headers (a 401 renews the Keystone token and asks once more), and
 * microversion negotiation on first use (GET /v3/: tether needs 3.44, the attachments API with
 * os-complete). Logs say method, path, status and duration — never a body: the answer to an
 * attachment update carries connection_info, which may hold credentials.
 */
import type { CinderAuth, Headers } from './auth.ts';
import { MIN_MICROVERSION } from './config.ts';
import { CinderHttpError, CinderUnavailableError, CinderVersionError, cinderErrorMessage, describeFetchFailure } from './errors.ts';

export interface CinderLog {
  debug(obj: object, msg: string): void;
}

export interface CinderResponse<T> {
  status: number;
  body: T | undefined;
}

export interface RequestOptions {
  /** Add the service role/token (calls Cinder restricts to services, e.g. deleting an attached attachment). */
  service?: boolean;
  /** Per-request timeout override. */
  timeoutMs?: number;
}

export interface ServerVersion {
  /** Highest microversion the server supports, e.g. "3.70". */
  max: string;
  min: string;
}

/** "3.44" → [3, 44] */
function parseMicroversion(v: string): [number, number] {
  const m = /^(\d+)\.(\d+)$/.exec(v);
  if (!m) throw new CinderVersionError(`Not a microversion: ${JSON.stringify(v)}`);
  return [Number(m[1]), Number(m[2])];
}

export function compareMicroversions(a: string, b: string): number {
  const [a1, a2] = parseMicroversion(a);
  const [b1, b2] = parseMicroversion(b);
  return a1 - b1 || a2 - b2;
}

export class CinderHttp {
  readonly microversion = MIN_MICROVERSION;
  private endpointPromise: Promise<string> | undefined;
  private versionPromise: Promise<ServerVersion> | undefined;
  private readonly fetch: typeof fetch;

  constructor(
    private readonly options: {
      /** CINDER_ENDPOINT; undefined: the Keystone catalog's. */
      endpoint: string | undefined;
      auth: CinderAuth;
      timeoutMs: number;
      log?: CinderLog;
      fetch?: typeof fetch;
    },
  ) {
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** The project-scoped v3 endpoint, without a trailing slash. */
  endpoint(): Promise<string> {
    this.endpointPromise ??= this.resolveEndpoint().catch((err: unknown) => {
      this.endpointPromise = undefined;
      throw err;
    });
    return this.endpointPromise;
  }

  private async resolveEndpoint(): Promise<string> {
    const raw = this.options.endpoint ?? (await this.options.auth.catalogEndpoint());
    if (!raw) throw new CinderUnavailableError('No Cinder endpoint: set CINDER_ENDPOINT, or give the Keystone catalog a block-storage (volumev3) endpoint');
    const projectId = await this.options.auth.projectId();
    let url = raw.replace(/\/+$/, '').replace(/%\(project_id\)s|\$\(project_id\)s|%\(tenant_id\)s|\$\(tenant_id\)s|\{project_id\}/g, projectId);
    // An endpoint without the project (…/v3): the 3.44 URLs still need it.
    if (/\/v3$/.test(url)) url = `${url}/${projectId}`;
    return url;
  }

  /** The versions document's URL: …/v3/ of the endpoint. */
  private async versionsUrl(): Promise<string> {
    const endpoint = await this.endpoint();
    const at = endpoint.search(/\/v3(\/|$)/);
    return at >= 0 ? `${endpoint.slice(0, at)}/v3/` : `${new URL(endpoint).origin}/`;
  }

  /** Reads the server's microversion range once; refuses servers that cannot do 3.44. */
  serverVersion(): Promise<ServerVersion> {
    this.versionPromise ??= this.negotiate().catch((err: unknown) => {
      this.versionPromise = undefined;
      throw err;
    });
    return this.versionPromise;
  }

  private async negotiate(): Promise<ServerVersion> {
    const url = await this.versionsUrl();
    const { status, text } = await this.send('GET', url, url, undefined, await this.options.auth.headers(), this.options.timeoutMs);
    // The root answers 300 Multiple Choices with the same document.
    if (status !== 200 && status !== 300) {
      if (status === 401 || status === 403 || status >= 500) {
        throw new CinderUnavailableError(`Cinder versions document ${url} answered ${status}: ${cinderErrorMessage(status, text)}`);
      }
      throw new CinderVersionError(`Cinder versions document ${url} answered ${status}: ${cinderErrorMessage(status, text)}`);
    }
    let versions: Array<{ id?: string; version?: string; min_version?: string; status?: string }> = [];
    try {
      const doc = JSON.parse(text) as { versions?: typeof versions; version?: (typeof versions)[number] };
      versions = doc.versions ?? (doc.version ? [doc.version] : []);
    } catch {
      throw new CinderVersionError(`Cinder versions document ${url} is not JSON`);
    }
    const v3 = versions.find((v) => v.id?.startsWith('v3'));
    if (!v3?.version) {
      throw new CinderVersionError(
        `Cinder at ${url} offers no v3 API with microversions (versions: ${versions.map((v) => v.id).join(', ') || 'none'}); tether needs ${MIN_MICROVERSION}`,
      );
    }
    const found = { max: v3.version, min: v3.min_version || '3.0' };
    if (compareMicroversions(found.max, MIN_MICROVERSION) < 0) {
      throw new CinderVersionError(
        `Cinder at ${url} supports volume API microversions up to ${found.max}; tether needs ${MIN_MICROVERSION} (attachments API with os-complete, Cinder Queens or later)`,
      );
    }
    if (compareMicroversions(found.min, MIN_MICROVERSION) > 0) {
      throw new CinderVersionError(`Cinder at ${url} no longer supports microversion ${MIN_MICROVERSION} (minimum ${found.min})`);
    }
    return found;
  }

  /**
   * One API call on the project endpoint (`path` like `/volumes/…`). Non-2xx answers throw
   * CinderHttpError (with Cinder's message); network failures and timeouts throw CinderUnavailableError.
   */
  async request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<CinderResponse<T>> {
    await this.serverVersion();
    const url = `${await this.endpoint()}${path}`;
    const timeoutMs = opts.timeoutMs ?? this.options.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const headers: Headers = {
        Accept: 'application/json',
        'OpenStack-API-Version': `volume ${this.microversion}`,
        ...(await this.options.auth.headers()),
        ...(opts.service ? await this.options.auth.serviceHeaders() : {}),
      };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await this.send(method, url, path, body, headers, timeoutMs);
      if (res.status === 401 && attempt === 0 && this.options.auth.invalidate()) continue;
      if (res.status >= 200 && res.status < 300) {
        if (res.text === '') return { status: res.status, body: undefined };
        try {
          return { status: res.status, body: JSON.parse(res.text) as T };
        } catch {
          throw new CinderUnavailableError(`Cinder answered ${res.status} to ${method} ${path} with a body that is not JSON`);
        }
      }
      throw new CinderHttpError(res.status, method, path, cinderErrorMessage(res.status, res.text), res.requestId);
    }
  }

  private async send(
    method: string,
    url: string,
    pathForLogs: string,
    body: unknown,
    headers: Headers,
    timeoutMs: number,
  ): Promise<{ status: number; text: string; requestId: string | null }> {
    const t0 = performance.now();
    let res: Response;
    try {
      res = await this.fetch(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      this.options.log?.debug({ method, path: pathForLogs, ms: Math.round(performance.now() - t0), error: describeFetchFailure(err, timeoutMs) }, 'cinder request failed');
      throw new CinderUnavailableError(`Cinder request ${method} ${pathForLogs} failed: ${describeFetchFailure(err, timeoutMs)}`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new CinderUnavailableError(`Cinder request ${method} ${pathForLogs}: reading the answer failed: ${describeFetchFailure(err, timeoutMs)}`);
    }
    const requestId = res.headers.get('x-openstack-request-id') ?? res.headers.get('x-compute-request-id');
    this.options.log?.debug({ method, path: pathForLogs, status: res.status, ms: Math.round(performance.now() - t0), requestId }, 'cinder request');
    return { status: res.status, text, requestId };
  }
}
