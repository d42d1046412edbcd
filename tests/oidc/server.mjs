// A real OpenID provider for the sign-in tests (oidc-provider, with its development login
// and consent pages, which accept any user name). Started by tests/security/conftest.py:
//   PORT=<port> REDIRECT_URIS=<uri>,<uri> node server.mjs
// prints "READY <issuer>" once it listens. Test users (any password):
//   alice  (group sarcoma-clinicians), audrey (sarcoma-audit), victor (sarcoma-viewers);
//   any other name signs in with no group (an unlisted user).
// It is also the authorization server of the SMART on FHIR launch tests: scopes launch,
// launch/patient and fhirUser; the token response of a launch names the patient PATIENT
// (default p1), as an EHR's does. A launch value "ctx:<base64url JSON>" is this test EHR's
// launch context: {"patient": ..., "appContext": ...} go into the token response (CDS Hooks
// appContext of a card's smart link). RP-initiated logout (end_session_endpoint) is on; each
// redirect URI's origin + "/" is a registered post_logout_redirect_uri (RP_LOGOUT=0: a
// provider without end_session_endpoint).
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
const launchPatient = process.env.PATIENT || 'p1';
const postLogoutUris = [...new Set(redirectUris.map((u) => `${new URL(u).origin}/`))];
const launches = new Map(); // authorization code -> the launch parameter of its request

const USERS = {
  alice: { name: 'Alice Clinician', email: 'alice@example.org', groups: ['sarcoma-clinicians'] },
  audrey: { name: 'Audrey Auditor', email: 'audrey@example.org', groups: ['sarcoma-audit'] },
  victor: { name: 'Victor Viewer', email: 'victor@example.org', groups: ['sarcoma-viewers'] },
};

const configuration = {
  clients: [
    {
      client_id: 'sarcoma-cds',
      client_secret: 'test-client-secret-not-for-production',
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'sarcoma-cds-smart',
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    {
      client_id: 'sarcoma-cds-public',
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
  ],
  pkce: { required: () => true },
  // ID_TOKEN_CLAIMS=1: the user's claims (fhirUser, name) in the ID token itself, as SMART
  // EHRs send them; otherwise only from userinfo (the OpenID Connect default)
  conformIdTokenClaims: process.env.ID_TOKEN_CLAIMS !== '1',
  scopes: ['openid', 'offline_access', 'launch', 'launch/patient'],
  extraParams: ['launch', 'aud'],
  claims: {
    fhirUser: ['fhirUser'],
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
  },
  async findAccount(ctx, id) {
    const user = USERS[id] || { name: id, email: `${id}@example.org`, groups: [] };
    // a login name unverified-<x> claims the e-mail <x>@example.org without having verified
    // it (no email_verified claim, as some providers send), e.g. unverified-alice
    // a login name handle-<x> is an account whose provider-assigned subject is sub-<x> and
    // whose self-chosen user name (preferred_username) is <x>
    if (id.startsWith('handle-')) {
      const handle = id.slice('handle-'.length);
      return {
        accountId: id,
        async claims() {
          return { sub: `sub-${handle}`, preferred_username: handle, name: handle, groups: [] };
        },
      };
    }
    if (id.startsWith('unverified-')) {
      const claimed = `${id.slice('unverified-'.length)}@example.org`;
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, name: id, email: claimed, groups: [] };
        },
      };
    }
    return {
      accountId: id,
      async claims() {
        return {
          sub: id, preferred_username: id, email_verified: true,
          // a login name patient-<x> is a patient at the EHR's portal (standalone launch)
          fhirUser: id.startsWith('patient-') ? `Patient/${id}` : `Practitioner/${id}`, ...user,
        };
      },
    };
  },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: process.env.RP_LOGOUT !== '0' } },
  cookies: { keys: ['test-cookie-key-not-for-production'] },
  ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Interaction: 600, Session: 600, Grant: 600 },
};


const provider = new Provider(issuer, configuration);
provider.proxy = false;
// Tests change a user's groups at the provider (roles removed there): POST
// /test/groups?user=<name>&groups=<g1,g2> (never for alice, audrey or victor).
provider.use(async (ctx, next) => {
  if (ctx.path === '/test/groups' && ctx.method === 'POST') {
    const user = String(ctx.query.user || '');
    if (!user || ['alice', 'audrey', 'victor'].includes(user)) { ctx.status = 400; return; }
    USERS[user] = { name: user, email: `${user}@example.org`,
      groups: String(ctx.query.groups || '').split(',').filter(Boolean) };
    ctx.status = 204;
    return;
  }
  await next();
});
provider.on('authorization.success', (ctx, out) => {
  const launch = ctx.oidc && ctx.oidc.params && ctx.oidc.params.launch;
  if (out && out.code && launch) launches.set(out.code, String(launch));
});
function launchContext(launch) {
  if (!launch || !launch.startsWith('ctx:')) return {};
  try {
    return JSON.parse(Buffer.from(launch.slice(4), 'base64url').toString('utf8'));
  } catch {
    return {};
  }
}
provider.use(async (ctx, next) => {
  await next();
  // SMART App Launch: the token response carries the launch context
  const code = ctx.oidc && ctx.oidc.entities && ctx.oidc.entities.AuthorizationCode;
  if (ctx.path === '/token' && ctx.status === 200 && ctx.body && ctx.body.access_token && code) {
    const scopes = String(code.scope || '').split(' ');
    if (scopes.includes('launch') || scopes.includes('launch/patient')) {
      const given = launchContext(launches.get(ctx.oidc.params && ctx.oidc.params.code));
      ctx.body.patient = given.patient || launchPatient;
      ctx.body.need_patient_banner = false;
      if (given.appContext) ctx.body.appContext = given.appContext;
    }
  }
});
const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
