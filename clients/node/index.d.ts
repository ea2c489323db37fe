// Types of the sessionbridge package. See README.md.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

/** A Node request, or a framework's request around one (Fastify's `request.raw`). */
export type AnyRequest = IncomingMessage | Http2ServerRequest | { raw: IncomingMessage | Http2ServerRequest };
export type AnyResponse = ServerResponse | Http2ServerResponse;

/** How the identity was resolved: ResolutionMethod without its prefix. */
export type Method =
  | 'COOKIE'
  | 'HANDOFF_TOKEN'
  | 'GA_LINKER'
  | 'USER_ID'
  | 'EMAIL'
  | 'REFERRER_BRIDGE'
  | 'SESSION_ID_PARAMETER'
  | 'GA_COOKIE'
  | 'NEW'
  | 'NO_CONSENT';

export type ConsentStateName = 'UNSPECIFIED' | 'GRANTED' | 'DENIED';

/** The consent in force (every signal set). */
export interface ConsentState {
  analyticsStorage: ConsentStateName;
  adStorage: ConsentStateName;
  adUserData: ConsentStateName;
  adPersonalization: ConsentStateName;
}

/** What the `consent` callback returns: each signal granted (`true`,
 * `'GRANTED'`), denied (`false`, `'DENIED'`) or left to the sidecar. */
export interface ConsentInput {
  analyticsStorage?: boolean | ConsentStateName | null;
  adStorage?: boolean | ConsentStateName | null;
  adUserData?: boolean | ConsentStateName | null;
  adPersonalization?: boolean | ConsentStateName | null;
}

/** A piece of evidence the sidecar did not use, and why (names without prefix). */
export interface Rejected {
  /** EvidenceKind: `'OWN_COOKIE'`, `'HANDOFF_TOKEN'`, `'CLIENT_IP'`, ... */
  kind: string;
  /** RejectionReason: `'MALFORMED'`, `'EXPIRED'`, `'REPLAYED'`, ... */
  reason: string;
  /** For a request field: its path, such as `context.referer`. */
  field: string;
  detail: string;
}

export interface Identity {
  clientId: string;
  sessionId: number;
  sessionNumber: number;
  userId: string;
  firstSeenUnixSeconds: number;
  lastSeenUnixSeconds: number;
}

/** The request's result: `req.sessionbridge` (Express), `request.sessionbridge` (Fastify). */
export interface Result extends Identity {
  method: Method;
  /** From 0 to 1: 1 for verified evidence. */
  confidence: number;
  newSession: boolean;
  newClient: boolean;
  persisted: boolean;
  rejected: Rejected[];
  consent: ConsentState | null;
  /** The URL without hand-off parameters, when it held some; '' otherwise. */
  cleanUrl: string;
  /** The Set-Cookie values queued on the response. */
  cookies: string[];
  /** The ResolveSessionResponse as received (proto field names). */
  response: Messages.ResolveSessionResponse;
}

/** The answer of `handoff`. On failure only `url` (the plain destination),
 * `token` (''), `response` (null) and `error` are set. */
export interface Handoff extends Partial<Omit<Result, 'url' | 'response' | 'consent' | 'persisted' | 'cleanUrl'>> {
  /** Where to send the visitor: the decorated URL, or the plain destination when the sidecar failed. */
  url: string;
  /** The sealed token ('' on failure), e.g. for Stripe's client_reference_id. */
  token: string;
  expiresAtUnixSeconds?: number;
  passiveExpiresAtUnixSeconds?: number;
  response: Messages.RecordHandoffResponse | null;
  error: Error | null;
}

export interface HandoffOptions {
  maxUses?: number;
  ttlSeconds?: number;
  passiveTtlSeconds?: number;
  extraAudience?: string[];
  bindUserAgent?: boolean;
  userId?: string;
  email?: string;
  /** The visitor's `new Date().getTimezoneOffset()`: also add a GA4 `_gl`. */
  gaLinkerTimezoneOffset?: number;
  /** The visitor's `Date.now()`, for the `_gl`. */
  gaLinkerClientUnixMillis?: number;
  deadlineMs?: number;
}

export interface User {
  userId?: string;
  email?: string;
}

/** TLS to the sidecar. Each value: a Buffer, PEM text or a file path. */
export interface TlsOptions {
  ca?: Buffer | string;
  cert?: Buffer | string;
  key?: Buffer | string;
  /** The name to check in the sidecar's certificate, when not the target's host. */
  servername?: string;
}

export interface Logger {
  warn?(line: string): void;
  error?(line: string): void;
}

/** A gRPC error (grpc-js ServiceError). */
export interface SidecarError extends Error {
  code?: number;
  details?: string;
}

export interface Options<Req = any> {
  /** host:port of the sidecar. Default `127.0.0.1:50051`. */
  target?: string;
  /** Bearer token (the sidecar's --auth-token-file). */
  token?: string;
  /** TLS to the sidecar; default plaintext. */
  tls?: TlsOptions;
  /** Deadline of each call in a page's path, ms. Default 50. */
  deadlineMs?: number;
  /** Addresses and CIDR blocks (a list, or a comma-separated string) or a hop count. Default: none. */
  trustedProxies?: string[] | string | number;
  /** Paths not resolved: path prefixes, or a predicate. */
  skip?: string | string[] | ((req: Req, path: string) => boolean | Promise<boolean>);
  /** The logged-in user, sent with the call to link the login. */
  user?: (req: Req) => User | string | null | undefined | Promise<User | string | null | undefined>;
  /** The visitor's consent (GA4 Consent Mode v2). */
  consent?: (req: Req) => ConsentInput | null | undefined | Promise<ConsentInput | null | undefined>;
  /** Ask for a GA4 `_ga` cookie too (default: the sidecar's setting). */
  gaCookie?: boolean;
  /** Answer 303 to the clean URL after a hand-off (GET/HEAD). Default true. */
  redirectCleanUrl?: boolean;
  /** Called with every failure the middleware swallows. */
  onError?: (error: SidecarError, req: Req) => void;
  /** Where the one line per failure goes (`warn`). Default `console`. */
  logger?: Logger;
  /** More gRPC channel options. */
  channelOptions?: Record<string, string | number>;
}

export interface ClientOptions {
  target?: string;
  token?: string;
  tls?: TlsOptions;
  /** Default deadline of this client's calls, ms. Default 5000. */
  deadlineMs?: number;
  channelOptions?: Record<string, string | number>;
}

export interface CallOptions {
  deadlineMs?: number;
}

/** The proto's messages as the raw calls take and give them: proto field
 * names, enums by name, 64-bit numbers as numbers, wrappers as plain values. */
export namespace Messages {
  type ConsentStateEnum = 'CONSENT_STATE_UNSPECIFIED' | 'CONSENT_STATE_GRANTED' | 'CONSENT_STATE_DENIED';
  interface Consent {
    analytics_storage?: ConsentStateEnum;
    ad_storage?: ConsentStateEnum;
    ad_user_data?: ConsentStateEnum;
    ad_personalization?: ConsentStateEnum;
  }
  interface RequestContext {
    host: string;
    url?: string;
    referer?: string;
    user_agent?: string;
    cookie_header?: string;
    client_ip?: string;
    accept_language?: string;
    consent?: Consent | null;
    global_privacy_control?: boolean;
    scheme?: string;
  }
  interface Identity {
    client_id: string;
    session_id: number;
    session_number: number;
    user_id: string;
    first_seen_unix_seconds: number;
    last_seen_unix_seconds: number;
  }
  interface Cookie {
    name: string;
    value: string;
    domain: string;
    path: string;
    /** null: a session cookie; 0: delete. */
    max_age_seconds: number | null;
    secure: boolean;
    http_only: boolean;
    same_site: string;
    set_cookie_header: string;
  }
  interface RejectedEvidence {
    kind: string;
    reason: string;
    detail: string;
    field: string;
  }
  interface MintCookieRequest {
    context: RequestContext;
    ga_cookie?: boolean | null;
  }
  interface MintCookieResponse {
    identity: Identity;
    method: string;
    cookies: Cookie[];
    new_session: boolean;
    rejected: RejectedEvidence[];
    confidence: number;
    new_client: boolean;
    persisted: boolean;
    consent: Required<Consent>;
  }
  interface ResolveSessionRequest {
    context: RequestContext;
    user_id?: string;
    email?: string;
    ga_cookie?: boolean | null;
    handoff_token?: string;
    passive?: boolean;
  }
  interface ResolveSessionResponse {
    identity: Identity;
    method: string;
    confidence: number;
    new_session: boolean;
    new_client: boolean;
    cookies: Cookie[];
    rejected: RejectedEvidence[];
    clean_url: string;
    persisted: boolean;
    consent: Required<Consent>;
  }
  interface RecordHandoffRequest {
    context: RequestContext;
    destination_url: string;
    extra_audience?: string[];
    ttl_seconds?: number;
    max_uses?: number;
    bind_user_agent?: boolean;
    ga_linker_timezone_offset?: number | null;
    passive_ttl_seconds?: number;
    ga_linker_client_unix_millis?: number | null;
    user_id?: string;
    email?: string;
  }
  interface RecordHandoffResponse {
    token: string;
    decorated_url: string;
    expires_at_unix_seconds: number;
    identity: Identity;
    cookies: Cookie[];
    method: string;
    confidence: number;
    new_session: boolean;
    new_client: boolean;
    rejected: RejectedEvidence[];
    passive_expires_at_unix_seconds: number;
  }
  interface LookupByUserRequest {
    user_id?: string;
    email?: string;
    limit?: number;
  }
  interface LookupByUserResponse {
    identity: Identity;
    recent: Identity[];
  }
  interface ForgetUserRequest {
    user_id?: string;
    email?: string;
  }
  interface ForgetUserResponse {
    identities_erased: number;
    found: boolean;
  }
  interface ForgetVisitorRequest {
    context: RequestContext;
  }
  interface ForgetVisitorResponse {
    found: boolean;
    identities_erased: number;
    cookies: Cookie[];
  }
}

export interface RawCalls {
  MintCookie(request: Messages.MintCookieRequest, options?: CallOptions): Promise<Messages.MintCookieResponse>;
  RecordHandoff(request: Messages.RecordHandoffRequest, options?: CallOptions): Promise<Messages.RecordHandoffResponse>;
  ResolveSession(request: Messages.ResolveSessionRequest, options?: CallOptions): Promise<Messages.ResolveSessionResponse>;
  LookupByUser(request: Messages.LookupByUserRequest, options?: CallOptions): Promise<Messages.LookupByUserResponse>;
  ForgetUser(request: Messages.ForgetUserRequest, options?: CallOptions): Promise<Messages.ForgetUserResponse>;
  ForgetVisitor(request: Messages.ForgetVisitorRequest, options?: CallOptions): Promise<Messages.ForgetVisitorResponse>;
}

export interface Lookup {
  identity: Identity;
  recent: Identity[];
  response: Messages.LookupByUserResponse;
}

export interface Forgotten {
  found: boolean;
  identitiesErased: number;
  response: Messages.ForgetUserResponse;
}

export interface VisitorForgotten {
  found: boolean;
  identitiesErased: number;
  /** Set-Cookie values deleting the visitor's cookies. */
  cookies: string[];
  response: Messages.ForgetVisitorResponse;
}

/** The promise client. Its calls throw on errors (gRPC status in `code`). */
export class Client {
  constructor(options?: ClientOptions);
  readonly target: string;
  /** Every RPC by its proto name. */
  readonly raw: RawCalls;
  call(method: keyof RawCalls, request: object, options?: CallOptions): Promise<any>;
  /** null when no identity is linked to the user (NOT_FOUND). */
  lookupByUser(user: User | string, options?: CallOptions & { limit?: number }): Promise<Lookup | null>;
  forgetUser(user: User | string, options?: CallOptions): Promise<Forgotten>;
  /** null when the context carries no valid own cookie (NOT_FOUND). */
  forgetVisitor(context: Messages.RequestContext, options?: CallOptions): Promise<VisitorForgotten | null>;
  close(): void;
}

/** The middleware's options, client and helpers, for one app. */
export class SessionBridge {
  constructor(options?: Options);
  readonly client: Client;
  /** The RequestContext the middleware sends for a request. */
  context(req: AnyRequest, target?: string): Messages.RequestContext;
  /** The whole middleware, framework-neutral: never throws. Answer 303 to
   * `redirect` when it is set; otherwise serve the request. */
  handle(
    req: IncomingMessage | Http2ServerRequest,
    res: AnyResponse,
    options?: { appReq?: object; target?: string },
  ): Promise<{ result: Result | null; redirect: string | null }>;
  handoff(req: AnyRequest, destinationUrl: string, options?: HandoffOptions): Promise<Handoff>;
  webhookIdentity(req: AnyRequest, token: string, options?: CallOptions): Promise<Result | null>;
  linkLogin(req: AnyRequest, user: User | string, options?: CallOptions): Promise<Result | null>;
  forgetVisitor(req: AnyRequest, options?: CallOptions): Promise<VisitorForgotten | null>;
  close(): void;
}

export type NextFunction = (err?: unknown) => void;

/** An Express / Connect middleware; its instance is `.instance`. */
export interface ExpressMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
  readonly instance: SessionBridge;
}

/** The Express / Connect middleware: `app.use(sessionbridge.express(options))`. */
export function express(options?: Options | SessionBridge): ExpressMiddleware;

/** Options of the Fastify plugin: middleware options, or an existing instance. */
export type FastifyPluginOptions = Options | { instance: SessionBridge };

/** The Fastify plugin: `app.register(sessionbridge.fastify, options)`. Applies
 * to the whole app (not encapsulated). For `request.sessionbridge` typed on
 * FastifyRequest, import `sessionbridge/fastify`. */
export function fastify(instance: any, options: FastifyPluginOptions, done: (err?: Error) => void): void;

export function create(options?: Options): SessionBridge;

/** The request's result, or null (skipped, failed, no middleware). */
export function current(req: object): Result | null;

/** Records a hand-off; fails open (the plain destination). */
export function handoff(req: AnyRequest, destinationUrl: string, options?: HandoffOptions): Promise<Handoff>;
/** The identity a hand-off token names, passively; null when it names no one; throws on other errors. */
export function webhookIdentity(req: AnyRequest, token: string, options?: CallOptions): Promise<Result | null>;
/** Resolves again with the user and replaces the request's result; null on failure; throws without a user. */
export function linkLogin(req: AnyRequest, user: User | string, options?: CallOptions): Promise<Result | null>;
/** Erases the visitor the request's own cookie names, deletes the cookie and leaves the request without result; null without a valid own cookie; throws on other errors. */
export function forgetVisitor(req: AnyRequest, options?: CallOptions): Promise<VisitorForgotten | null>;

/** The RequestContext of a request, with the trusted-proxy rules. */
export function contextOf(
  req: AnyRequest,
  options?: { trustedProxies?: string[] | string | number; target?: string },
): Messages.RequestContext;
/** The client address of a request by the trusted-proxy rules. */
export function clientAddress(req: IncomingMessage | Http2ServerRequest, trustedProxies?: string[] | string | number): string;
/** The elements of `Forwarded` headers (RFC 7239). */
export function parseForwarded(values: string[]): Array<Record<string, string>>;

/** gRPC status codes (grpc-js `status`). */
export const status: Readonly<Record<string, number>> & {
  readonly OK: 0;
  readonly NOT_FOUND: 5;
  readonly DEADLINE_EXCEEDED: 4;
  readonly UNAVAILABLE: 14;
  readonly UNAUTHENTICATED: 16;
  readonly INVALID_ARGUMENT: 3;
};

declare global {
  namespace Express {
    interface Request {
      /** The sessionbridge result; null when skipped or when the sidecar failed. */
      sessionbridge?: Result | null;
    }
  }
}
