// A real OpenID provider for the sign-in tests (oidc-provider, with its development login
// and consent pages, which accept any user name). Started by tests/security/conftest.py:
//   PORT=<port> REDIRECT_URIS=<uri>,<uri> node server.mjs
// prints "READY <issuer>" once it listens. Test users (any password):
//   alice  (group sarcoma-clinicians), audrey (sarcoma-audit), victor (sarcoma-viewers);
//   any other name signs in with no group (an unlisted user).
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);

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
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'sarcoma-cds-public',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
  ],
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
  },
  async findAccount(ctx, id) {
    const user = USERS[id] || { name: id, email: `${id}@example.org`, groups: [] };
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, email_verified: true, ...user };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['test-cookie-key-not-for-production'] },
  ttl: { AuthorizationCode: 60, IdToken: 300, AccessToken: 300, Interaction: 600, Session: 600, Grant: 600 },
};


const provider = new Provider(issuer, configuration);
provider.proxy = false;
const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
