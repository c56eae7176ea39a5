// A real OpenID Connect provider (npm `oidc-provider`, panva) run as a loopback
// test peer for the oauthbearer-proxy tests.
//
//   node provider.mjs --port P --admin-port A
//
// * Port P (127.0.0.1 only) serves the provider itself, issuer http://127.0.0.1:P:
//   discovery, JWKS, userinfo (/me), introspection (/token/introspection),
//   revocation (/token/revocation), token and authorization endpoints.
// * Port A (127.0.0.1 only) is a plain node:http admin API for the tests:
//     POST /token        {"sub":"alice","scope":"openid email profile","ttl":300,
//                         "format":"opaque"|"jwt","client":"mail-client","resource":"urn:mail"}
//                        -> {"access_token":"...","expires_in":300,"token_type":"Bearer",...}
//                         optional "jkt": a DPoP key thumbprint (the token is then
//                         sender-constrained: `cnf` in JWTs and introspection)
//                         optional "claims": {"mailhost":"mail2"}: extra claims in the
//                         token (JWT payload, introspection answer)
//     POST /id-token     {"sub":"alice","client":"mail-client","nonce":"n"|null,
//                         "access_token":"..."|null} -> {"id_token":"..."}: an OpenID
//                         ID token issued by the provider's own IdToken class
//                         (no `typ` header; `nonce` and `at_hash` when given)
//     GET  /stats        -> per-endpoint counts of requests the provider received
//     POST /stats/reset  -> zero the counts
//     POST /revoke       {"token":"..."} -> {"revoked":true|false} (opaque tokens)
//     POST /rotate-keys  {"keep_old":false} -> new signing key (provider rebuilt)
//     POST /client       {"client_id":"mail-client","backchannel_logout_uri":"http://127.0.0.1:N/...",
//                         "backchannel_logout_session_required":false} -> the client's
//                         metadata updated (provider rebuilt, tokens and grants kept)
//     POST /backchannel-logout {"sub":"alice","client":"mail-client","sid":"..."|null}
//                        -> {"status":200}: the provider's own back-channel logout of
//                         that client for that user (what its end_session endpoint
//                         runs for each client of the ended session): it builds the
//                         logout token, signs it and POSTs it to backchannel_logout_uri
//     POST /sign-logout  {"payload":{...},"header":{...},"foreign":false} -> {"token":"..."}
//                         the payload signed RS256 with the provider's signing key
//                         (kid included), or with a key of its own that was never
//                         published ("foreign": true): forged logout tokens for tests
//     POST /site-client  {"redirect_uri":"https://127.0.0.1:N/oidc/callback"} -> the
//                         self-service site's client (`mail-site`, secret `site-secret`,
//                         client_secret_basic, code + refresh_token) gets that
//                         redirect URI (provider rebuilt, tokens and grants kept)
//     POST /account      {"sub":"alice","disabled":true} -> the account is disabled
//                         (findAccount no longer finds it: its refresh tokens are
//                         refused with invalid_grant) or enabled again
//     GET  /health       -> {"ok":true}
// Port P also serves the provider's own login and consent pages (its dev
// interactions: any login name that is an account below, any password).
// Prints the single line READY on stdout once both ports listen.
//
// Everything is throw-away: keys are generated at start, storage is in memory.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// ---------------------------------------------------------------- arguments

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'admin-port': { type: 'string' },
  },
});
const PORT = Number(args.port);
const ADMIN_PORT = Number(args['admin-port']);
if (!Number.isInteger(PORT) || !Number.isInteger(ADMIN_PORT) || PORT <= 0 || ADMIN_PORT <= 0) {
  console.error('usage: node provider.mjs --port P --admin-port A');
  process.exit(2);
}
const HOST = '127.0.0.1';
// Plain http on loopback: oidc-provider accepts any valid web URI as issuer and
// builds every endpoint URL from it, so nothing else is needed for http.
const ISSUER = `http://${HOST}:${PORT}`;

// ---------------------------------------------------------------- fixtures

// The static bearer token accepted at the introspection endpoint (Stalwart's
// `auth.method = "token"`), see the introspection middleware below.
const STATIC_INTROSPECTION_TOKEN = 'introspect-static-token';

// The resource (RFC 8707) for which JWT access tokens are issued.
const MAIL_RESOURCE = 'urn:mail';
const MAIL_RESOURCE_SCOPE = 'openid email profile';
// Another resource server's audience (the `other-app` API).
const OTHER_RESOURCE = 'urn:other';

const ACCOUNTS = {
  // user00 .. user49: the several-backends tests' users (peers.py --second-dovecot).
  ...Object.fromEntries(Array.from({ length: 50 }, (_, i) => {
    const name = `user${String(i).padStart(2, '0')}`;
    return [name, { email: `${name}@example.com`, preferred_username: name, name }];
  })),
  alice: { email: 'alice@example.com', preferred_username: 'alice', name: 'Alice Example' },
  bob: { email: 'bob@example.com', preferred_username: 'bob', name: 'Bob Example' },
  noemail: { preferred_username: 'noemail', name: 'No Email' },
  // Typed someone else's address into their profile, never verified it.
  mallory: {
    email: 'bob@example.com', email_verified: false, preferred_username: 'mallory', name: 'Mallory',
  },
  // An account whose `sub` is a mailbox (a provider that keys users by email).
  'carol@example.com': { email: 'carol@example.com', preferred_username: 'carol', name: 'Carol' },
  // Another account whose address differs from carol's only by case.
  'carol-mixed': { email: 'Carol@Example.com', preferred_username: 'Carol', name: 'Carol Mixed' },
  // An address with a `+` tag: Dovecot's default auth_username_chars has no
  // `+`, so it refuses this name (tests of upstream refusals).
  tagged: { email: 'alice+tag@example.com', preferred_username: 'alice+tag', name: 'Alice Tagged' },
  // 50 non-ASCII letters: 312 characters as xtext, over Postfix's 255 for an
  // XCLIENT attribute (and outside Dovecot's auth_username_chars).
  long: { email: `${'é'.repeat(50)}@example.com`, preferred_username: 'long', name: 'Long Name' },
};

// Whether an account's email is verified (true unless the fixture says otherwise).
const emailVerified = (account) => account.email_verified !== false;

// Internal client the introspection middleware authenticates as; its secret is
// random and never leaves this process.
const INTERNAL_CLIENT_ID = 'introspection-internal';
const INTERNAL_CLIENT_SECRET = crypto.randomBytes(24).toString('base64url');

const CLIENTS = [
  // The proxy, authenticating with HTTP Basic (client_secret_basic).
  {
    client_id: 'mail-proxy',
    client_secret: 'proxy-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    introspection_endpoint_auth_method: 'client_secret_basic',
    revocation_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  },
  // The proxy, authenticating with client_id/client_secret in the form body.
  {
    client_id: 'mail-proxy-post',
    client_secret: 'post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    introspection_endpoint_auth_method: 'client_secret_post',
    revocation_endpoint_auth_method: 'client_secret_post',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  },
  // Another application of the same organisation (not mail): its tokens
  // must never open a mailbox.
  {
    client_id: 'other-app',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/other-callback'],
  },
  // A public mail client (the MUA); tokens minted by the admin API belong to it
  // unless the request names another client.
  {
    client_id: 'mail-client',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
  },
  // The self-service app-password site (issue 14): a confidential web
  // client; its redirect URI is set at run time (POST /site-client).
  {
    client_id: 'mail-site',
    client_secret: 'site-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['https://127.0.0.1/oidc/callback'],
  },
  {
    client_id: INTERNAL_CLIENT_ID,
    client_secret: INTERNAL_CLIENT_SECRET,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  },
];
const DEFAULT_TOKEN_CLIENT = 'mail-client';

// ---------------------------------------------------------------- storage

// Unbounded in-memory adapter shared by every Provider instance this process
// builds (so tokens survive /rotate-keys). The package's own memory adapter is
// per instance and an LRU of 1000 entries, which a busy test could overflow.
const store = new Map(); // key -> { payload, expiresAt (ms) | undefined }

function storeGet(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.value;
}

function storeSet(key, value, expiresIn) {
  const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
  store.set(key, { value, expiresAt });
}

class SharedMemoryAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    storeSet(this.key(id), payload, expiresIn);
    if (payload.uid) storeSet(`uid:${payload.uid}`, id, expiresIn);
    if (payload.userCode) storeSet(`userCode:${payload.userCode}`, id, expiresIn);
    if (payload.grantId) {
      const members = storeGet(`grant:${payload.grantId}`) ?? new Set();
      members.add(this.key(id));
      storeSet(`grant:${payload.grantId}`, members);
    }
  }

  async find(id) { return storeGet(this.key(id)); }

  async findByUid(uid) {
    const id = storeGet(`uid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = storeGet(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = storeGet(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of storeGet(`grant:${grantId}`) ?? []) store.delete(key);
    store.delete(`grant:${grantId}`);
  }
}

// ---------------------------------------------------------------- keys

let keyCounter = 0;

// A fresh RSA-2048 signing key as a private JWK with a readable, unique kid.
function newSigningKey() {
  keyCounter += 1;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `test-key-${keyCounter}-${crypto.randomBytes(4).toString('hex')}`,
    use: 'sig',
    alg: 'RS256',
  };
}

// ---------------------------------------------------------------- statistics

// Counts of requests the provider received, per endpoint (by path).
const ROUTE_NAMES = {
  '/.well-known/openid-configuration': 'discovery',
  '/jwks': 'jwks',
  '/me': 'userinfo',
  '/token/introspection': 'introspection',
  '/token/revocation': 'revocation',
  '/token': 'token',
  '/auth': 'authorization',
};
function emptyStats() {
  const stats = { total: 0, other: 0 };
  for (const name of Object.values(ROUTE_NAMES)) stats[name] = 0;
  return stats;
}
let stats = emptyStats();

// ---------------------------------------------------------------- provider

function basicAuthHeader(id, secret) {
  const enc = (s) => encodeURIComponent(s);
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

// Reads a request body completely (bounded), for the introspection middleware.
async function readRawBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

// Whether `value` is an access token the provider issued and still holds
// (not revoked, not expired): what a resource server checks of a bearer.
async function liveAccessToken(provider, value) {
  try {
    const token = await provider.AccessToken.find(value);
    return !!token && !token.isExpired;
  } catch {
    return false;
  }
}

function buildProvider(keys) {
  const provider = new Provider(ISSUER, {
    adapter: SharedMemoryAdapter,
    clients: CLIENTS,
    jwks: { keys },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },

    async findAccount(ctx, sub) {
      const account = ACCOUNTS[sub];
      if (!account || account.disabled) return undefined;
      return {
        accountId: sub,
        async claims(use, scope) {
          const claims = { sub };
          if (account.email) {
            claims.email = account.email;
            claims.email_verified = emailVerified(account);
          }
          claims.preferred_username = account.preferred_username;
          claims.name = account.name;
          return claims; // oidc-provider filters these by the granted scopes
        },
      };
    },

    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    scopes: ['openid', 'email', 'profile', 'offline_access'],

    features: {
      // The provider's own login and consent pages, for the site's browser
      // test; every other test gets its tokens from the admin API.
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      // OpenID Connect Back-Channel Logout 1.0 (clients get a
      // backchannel_logout_uri at run time through the admin API).
      backchannelLogout: { enabled: true },
      // JWT access tokens for the resource `urn:mail` (RFC 8707). Tokens
      // without a resource stay opaque and are usable at userinfo.
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator === MAIL_RESOURCE || resourceIndicator === OTHER_RESOURCE) {
            return resourceServerInfo(resourceIndicator);
          }
          throw new Provider.errors.InvalidTarget();
        },
      },
    },

    // Extra claims stored with every access token: they appear in the
    // introspection response (RFC 7662 `username`, plus `email`) and in JWT
    // access tokens, so a resource server can map a token to a mailbox without
    // a userinfo call. `username` is always there; `email` needs the email scope.
    async extraTokenClaims(ctx, token) {
      const account = ACCOUNTS[token.accountId];
      if (!account) return undefined;
      const scopes = new Set((token.scope ?? '').split(' '));
      // Test-only claims given to POST /token (`claims`), e.g. a mail host.
      const extra = { ...(EXTRA_CLAIMS.get(token.jti) ?? {}), username: account.preferred_username };
      if (scopes.has('email') && account.email) {
        extra.email = account.email;
        extra.email_verified = emailVerified(account);
      }
      return extra;
    },

    // oidc-provider refuses to POST to loopback addresses (SSRF protection
    // in its fetch helper); the proxy under test listens on 127.0.0.1, so
    // loopback targets go out without that dispatcher, and only they.
    fetch(url, options) {
      if (new URL(url).hostname === HOST) delete options.dispatcher;
      return globalThis.fetch(url, options);
    },

    ttl: {
      AccessToken: 3600,
      Grant: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
      Interaction: 3600,
      IdToken: 3600,
      AuthorizationCode: 60,
      RefreshToken: 14 * 24 * 3600,
    },
  });

  // Request counting (before anything else, so rejected requests count too).
  provider.use(async (ctx, next) => {
    const name = ROUTE_NAMES[ctx.path] ?? 'other';
    stats[name] += 1;
    stats.total += 1;
    await next();
    console.log(`${new Date().toISOString()} ${ctx.method} ${ctx.path} -> ${ctx.status}`);
  });

  // ------------------------------------------------------------------------
  // Stalwart-style introspection authentication (NOT part of any RFC).
  //
  // Stalwart's `auth.method` for its introspection call can be `none`,
  // `basic`, `token` (Authorization: Bearer <static token>) or `user-token`
  // (Authorization: Bearer <the token being introspected>). oidc-provider only
  // implements RFC client authentication (Basic, client_secret_post, ...), so
  // requests that carry NO client credentials are mapped here:
  //   no Authorization header                    -> internal client
  //   Authorization: Bearer introspect-static-token -> internal client
  //   Authorization: Bearer X, X == form `token` -> internal client, if X is
  //                                                 a live access token; else
  //                                                 401 invalid_token
  //   Authorization: Bearer <anything else>      -> 401 invalid_client
  // "Internal client" means we inject HTTP Basic credentials of the private
  // client INTERNAL_CLIENT_ID. With `user-token` the bearer authenticates the
  // request, as at any resource server (RFC 6750 §3.1): a revoked, expired or
  // unknown bearer is refused with 401 `invalid_token` before introspection.
  // Requests with Basic auth or client_id /
  // client_secret / client_assertion in the body are left untouched. The
  // provider itself still performs the introspection in every case.
  // ------------------------------------------------------------------------
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/token/introspection' || ctx.method !== 'POST') return next();
    const authorization = ctx.get('authorization');
    if (/^basic /i.test(authorization)) return next(); // RFC client_secret_basic
    if (!ctx.is('application/x-www-form-urlencoded')) return next(); // provider rejects it

    // Read the form ourselves; oidc-provider then parses ctx.req.body (its
    // documented fallback for an already consumed body; it warns once).
    const raw = await readRawBody(ctx.req);
    ctx.req.body = raw;
    const form = new URLSearchParams(raw.toString('utf8'));
    if (form.has('client_id') || form.has('client_secret') || form.has('client_assertion')) {
      return next(); // RFC client_secret_post etc.
    }

    if (authorization) {
      const match = /^bearer\s+(\S+)\s*$/i.exec(authorization);
      if (!match) return next(); // unknown scheme: let the provider reject it
      const bearer = match[1];
      const userToken = bearer !== STATIC_INTROSPECTION_TOKEN && bearer === form.get('token');
      if (bearer !== STATIC_INTROSPECTION_TOKEN && !userToken) {
        ctx.status = 401;
        ctx.set('WWW-Authenticate', 'Bearer error="invalid_token"');
        ctx.set('Cache-Control', 'no-store');
        ctx.body = { error: 'invalid_client', error_description: 'unknown bearer credential' };
        return undefined;
      }
      if (userToken && !(await liveAccessToken(provider, bearer))) {
        ctx.status = 401;
        ctx.set('WWW-Authenticate', 'Bearer error="invalid_token", error_description="invalid or revoked access token"');
        ctx.set('Cache-Control', 'no-store');
        ctx.body = { error: 'invalid_token', error_description: 'invalid or revoked access token' };
        return undefined;
      }
    }
    ctx.req.headers.authorization = basicAuthHeader(INTERNAL_CLIENT_ID, INTERNAL_CLIENT_SECRET);
    return next();
  });

  provider.on('server_error', (ctx, err) => {
    console.error(`server_error on ${ctx?.path}:`, err);
  });
  return provider;
}

function resourceServerInfo(resource = MAIL_RESOURCE) {
  return {
    scope: MAIL_RESOURCE_SCOPE,
    audience: resource,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 3600,
    jwt: { sign: { alg: 'RS256' } },
  };
}

// POST /token `claims`: extra claims for one token, by its jti (read by
// extraTokenClaims when the token is saved).
const EXTRA_CLAIMS = new Map();

let signingKeys = [newSigningKey()];
let provider = buildProvider(signingKeys);
let providerHandler = provider.callback();

// ---------------------------------------------------------------- minting

// Mints an access token through the provider's own models: a Grant for the
// account and client, then an AccessToken bound to it (what the token
// endpoint would do after a successful authorization code exchange).
async function mintToken({
  sub, scope = 'openid email profile', ttl = 300, format = 'opaque', client: clientId,
  resource = MAIL_RESOURCE, jkt, claims,
}) {
  if (typeof sub !== 'string' || !sub) throw new Error('"sub" (string) is required');
  if (!Number.isInteger(ttl) || ttl < 1) throw new Error('"ttl" must be an integer >= 1');
  if (format !== 'opaque' && format !== 'jwt') throw new Error('"format" must be "opaque" or "jwt"');

  const client = await provider.Client.find(clientId ?? DEFAULT_TOKEN_CLIENT);
  if (!client) throw new Error(`unknown client ${clientId}`);

  const grant = new provider.Grant({ accountId: sub, clientId: client.clientId });
  grant.addOIDCScope(scope);
  if (format === 'jwt') grant.addResourceScope(resource, scope);
  const grantId = await grant.save();

  const token = new provider.AccessToken({
    accountId: sub,
    client,
    grantId,
    scope,
    expiresIn: ttl,
    gty: 'authorization_code',
    ...(typeof jkt === 'string' ? { jkt } : {}),
    ...(format === 'jwt'
      ? { resourceServer: new provider.ResourceServer(resource, resourceServerInfo(resource)) }
      : {}),
  });
  if (claims !== undefined) {
    if (typeof claims !== 'object' || claims === null) throw new Error('"claims" must be an object');
    if (!token.jti) token.jti = token.generateTokenId(); // save() keeps it
    EXTRA_CLAIMS.set(token.jti, claims);
  }
  let value;
  try {
    value = await token.save();
  } finally {
    EXTRA_CLAIMS.delete(token.jti);
  }
  return {
    access_token: value,
    token_type: 'Bearer',
    expires_in: ttl,
    format,
    scope,
    sub,
    client_id: client.clientId,
    ...(format === 'jwt' ? { aud: resource, kid: signingKeys[0].kid } : {}),
  };
}

// Issues an OpenID ID token the way the token endpoint does (the provider's
// IdToken class, `use: 'idtoken'`): audience = the client, no `typ` header,
// `nonce` and `at_hash` when asked for.
async function mintIdToken({
  sub, client: clientId = DEFAULT_TOKEN_CLIENT, nonce, access_token: accessToken,
}) {
  const account = ACCOUNTS[sub];
  if (!account) throw new Error(`unknown account ${sub}`);
  const client = await provider.Client.find(clientId);
  if (!client) throw new Error(`unknown client ${clientId}`);
  const claims = {
    sub,
    email: account.email,
    email_verified: emailVerified(account),
    preferred_username: account.preferred_username,
    name: account.name,
  };
  const token = new provider.IdToken(claims, { client });
  token.scope = 'openid email profile';
  if (typeof nonce === 'string') token.set('nonce', nonce);
  if (typeof accessToken === 'string') token.set('at_hash', accessToken);
  return { id_token: await token.issue({ use: 'idtoken' }), client_id: client.clientId };
}

// ---------------------------------------------------------------- logout

// Updates a client's back-channel logout metadata and rebuilds the provider
// (static clients are read when it is built; the shared store keeps tokens).
function updateClient({
  client_id: clientId, backchannel_logout_uri: uri,
  backchannel_logout_session_required: sessionRequired = false,
}) {
  const client = CLIENTS.find((c) => c.client_id === clientId);
  if (!client) throw new Error(`unknown client ${clientId}`);
  if (typeof uri !== 'string' || new URL(uri).hostname !== HOST) {
    throw new Error('"backchannel_logout_uri" must be an http URL on 127.0.0.1');
  }
  client.backchannel_logout_uri = uri;
  client.backchannel_logout_session_required = !!sessionRequired;
  provider = buildProvider(signingKeys);
  providerHandler = provider.callback();
  return { client_id: clientId, backchannel_logout_uri: uri };
}

// The site client's redirect URI (the site's port is known only at run time).
function updateSiteClient({ redirect_uri: uri }) {
  const client = CLIENTS.find((c) => c.client_id === 'mail-site');
  if (typeof uri !== 'string' || new URL(uri).hostname !== HOST) {
    throw new Error('"redirect_uri" must be a URL on 127.0.0.1');
  }
  client.redirect_uris = [uri];
  provider = buildProvider(signingKeys);
  providerHandler = provider.callback();
  return { client_id: client.client_id, redirect_uris: client.redirect_uris };
}

// Disables (or enables again) an account at the provider.
function updateAccount({ sub, disabled }) {
  const account = ACCOUNTS[sub];
  if (!account) throw new Error(`unknown account ${sub}`);
  account.disabled = !!disabled;
  return { sub, disabled: account.disabled };
}

// The provider's own back-channel logout of one client for one user
// (Client#backchannelLogout, the call end_session makes): it signs the
// logout token and POSTs it to the client's backchannel_logout_uri.
async function backchannelLogout({ sub, client: clientId = DEFAULT_TOKEN_CLIENT, sid }) {
  if (typeof sub !== 'string' || !sub) throw new Error('"sub" (string) is required');
  const client = await provider.Client.find(clientId);
  if (!client) throw new Error(`unknown client ${clientId}`);
  if (!client.backchannelLogoutUri) throw new Error(`client ${clientId} has no backchannel_logout_uri`);
  const session = typeof sid === 'string' ? sid : crypto.randomUUID();
  try {
    await client.backchannelLogout(sub, session);
    return { status: 200, sid: session };
  } catch (err) {
    return { status: err?.response?.status ?? 0, error: String(err?.message ?? err) };
  }
}

// A key nobody published, for forged signatures (same kid as the real one).
const FOREIGN_KEY = newSigningKey();

// Signs an arbitrary payload as a JWS (RS256) for forged-token tests.
function signLogout({ payload, header = {}, foreign = false }) {
  if (typeof payload !== 'object' || payload === null) throw new Error('"payload" (object) is required');
  const jwk = signingKeys[0];
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = { alg: 'RS256', typ: 'logout+jwt', kid: jwk.kid, ...header };
  const input = `${b64(head)}.${b64(payload)}`;
  const key = crypto.createPrivateKey({ key: foreign ? FOREIGN_KEY : jwk, format: 'jwk' });
  const signature = crypto.sign('sha256', Buffer.from(input), key).toString('base64url');
  return { token: `${input}.${signature}`, kid: jwk.kid, issuer: ISSUER };
}

// ---------------------------------------------------------------- admin API

async function readJson(req) {
  const raw = await readRawBody(req);
  if (raw.length === 0) return {};
  return JSON.parse(raw.toString('utf8'));
}

function reply(res, status, body) {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function admin(req, res) {
  const { pathname } = new URL(req.url, 'http://admin');
  try {
    if (req.method === 'POST' && pathname === '/token') {
      return reply(res, 200, await mintToken(await readJson(req)));
    }
    if (req.method === 'POST' && pathname === '/id-token') {
      return reply(res, 200, await mintIdToken(await readJson(req)));
    }
    if (req.method === 'POST' && pathname === '/revoke') {
      // Revoke (delete) an opaque access token, as if the user logged out.
      const { token } = await readJson(req);
      const found = typeof token === 'string' ? await provider.AccessToken.find(token) : undefined;
      if (found) await found.destroy();
      return reply(res, 200, { revoked: !!found });
    }
    if (req.method === 'POST' && pathname === '/client') {
      return reply(res, 200, updateClient(await readJson(req)));
    }
    if (req.method === 'POST' && pathname === '/site-client') {
      return reply(res, 200, updateSiteClient(await readJson(req)));
    }
    if (req.method === 'POST' && pathname === '/account') {
      return reply(res, 200, updateAccount(await readJson(req)));
    }
    if (req.method === 'POST' && pathname === '/backchannel-logout') {
      return reply(res, 200, await backchannelLogout(await readJson(req)));
    }
    if (req.method === 'POST' && pathname === '/sign-logout') {
      return reply(res, 200, signLogout(await readJson(req)));
    }
    if (req.method === 'GET' && pathname === '/stats') {
      return reply(res, 200, stats);
    }
    if (req.method === 'POST' && pathname === '/stats/reset') {
      stats = emptyStats();
      return reply(res, 200, stats);
    }
    if (req.method === 'POST' && pathname === '/rotate-keys') {
      // Rebuild the provider with a new signing key. With keep_old the old
      // public key stays published in the JWKS (signing uses the new one).
      const { keep_old: keepOld = false } = await readJson(req);
      const fresh = newSigningKey();
      const keys = keepOld ? [fresh, ...signingKeys] : [fresh];
      const rebuilt = buildProvider(keys);
      signingKeys = keys;
      provider = rebuilt;
      providerHandler = provider.callback();
      return reply(res, 200, { kid: fresh.kid, kids: keys.map((k) => k.kid) });
    }
    if (req.method === 'GET' && pathname === '/health') {
      return reply(res, 200, { ok: true, issuer: ISSUER });
    }
    return reply(res, 404, { error: 'not_found' });
  } catch (err) {
    return reply(res, 400, { error: 'bad_request', error_description: String(err?.message ?? err) });
  }
}

// ---------------------------------------------------------------- servers

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, resolve);
  });
}

// Dispatch through a variable so /rotate-keys can swap the provider instance.
const providerServer = http.createServer((req, res) => providerHandler(req, res));
const adminServer = http.createServer((req, res) => { admin(req, res); });

try {
  await listen(providerServer, PORT);
  await listen(adminServer, ADMIN_PORT);
} catch (err) {
  console.error(`cannot listen: ${err.message}`);
  process.exit(1);
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    providerServer.close();
    adminServer.close();
    process.exit(0);
  });
}

console.log('READY');
