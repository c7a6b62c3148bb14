// A real OpenID provider (npm `oidc-provider`) on 127.0.0.1 for MedLens's SSO tests.
//
// Configured by environment (set by tests/server/test_server_sso.py):
//   OIDC_PORT          port to listen on (127.0.0.1 only)
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI   the one client (MedLens)
//   OIDC_ACCOUNTS      JSON {"<login>": {claims...}}: the accounts a login form accepts
//   OIDC_EXTRA_CLAIMS  JSON list of custom claim names (role, groups) put in the ID token
// PKCE is required (S256 only). The interaction is a plain HTML form (no script) that
// takes a login name and grants consent at once, so a test can POST it non-interactively.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');
const extraClaims = JSON.parse(process.env.OIDC_EXTRA_CLAIMS || '[]');

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID,
    client_secret: process.env.OIDC_CLIENT_SECRET,
    redirect_uris: [process.env.OIDC_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub', ...extraClaims],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
  },
  // Scope claims in the ID token too (not only at userinfo), as Keycloak & co. can do.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => {
    if (!accounts[sub]) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...accounts[sub] }) };
  },
});

function loginForm(uid) {
  return `<!doctype html><title>Test provider</title>
<form method="post" action="/interaction/${uid}/login">
<input name="login"><button type="submit">Sign in</button></form>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res, uid, submit) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (!submit) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginForm(uid));
    return;
  }
  const login = (await readForm(req)).get('login') || '';
  if (!accounts[login]) {
    await provider.interactionFinished(req, res, { error: 'access_denied' });
    return;
  }
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(
    req, res, { login: { accountId: login }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const handler = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(req.url.split('?')[0]);
  if (!match) {
    handler(req, res);
    return;
  }
  const submit = Boolean(match[2]) && req.method === 'POST';
  interaction(req, res, match[1], submit).catch((err) => {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(err));
  });
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider ready at ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
