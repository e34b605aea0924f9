// The dev demo page: supabase-js (vendored UMD build, global `supabase`) against the auth service, and the
// API called with the session's access token. Configuration comes from `dev-config.json` next to the page
// ({ api, auth, anonKey, acmeId, demoUsers }), written by `intellifill dev` or by the browser test.
'use strict';

const $ = (id) => document.getElementById(id);
let config;
let client;
let token;

function fail(message) {
  $('error').textContent = message;
}

async function api(path, options = {}) {
  const response = await fetch(config.api + path, {
    ...options,
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json', ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => null);
  return { status: response.status, body, requestId: response.headers.get('X-Request-ID') };
}

// A page of knowledge summaries (`{ data: [{ id, title, excerpt, ... }], nextCursor }`).
function list(element, page) {
  element.replaceChildren(...page.data.map((k) => {
    const li = document.createElement('li');
    li.textContent = k.title + ': ' + k.excerpt;
    return li;
  }));
  if (page.data.length === 0) element.textContent = '(nothing)';
}

async function showApp(session) {
  token = session.access_token;
  fail('');
  $('after-signout').textContent = '';
  $('signin').hidden = true;
  $('app').hidden = false;
  $('who').textContent = session.user.email;
  const me = await api('/api/me');
  $('me').textContent = JSON.stringify(me.body, null, 2);
  if (me.status !== 200) return fail('/api/me answered ' + me.status);
  const org = me.body.organizations.find((o) => o.organizationId === me.body.currentOrganizationId)
    || me.body.organizations[0];
  // A user who just signed up belongs to no organization yet: the page offers to create one.
  $('new-org').hidden = Boolean(org);
  $('org').hidden = !org;
  if (!org) return;
  config.orgId = org.organizationId;
  $('org-name').textContent = org.name;
  await refresh();
}

async function refresh() {
  const r = await api('/api/organizations/' + config.orgId + '/knowledge');
  if (r.status !== 200) return fail('list answered ' + r.status + ': ' + JSON.stringify(r.body));
  list($('knowledge'), r.body);
}

async function main() {
  config = await (await fetch('dev-config.json')).json();
  client = supabase.createClient(config.auth, config.anonKey);
  $('demo-users').textContent = config.demoUsers.join(', ');

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const { data, error } = await client.auth.signInWithPassword({ email: $('email').value, password: $('password').value });
    if (error) return fail('sign in: ' + error.message);
    await showApp(data.session);
  });
  $('signup-button').addEventListener('click', async () => {
    const email = $('email').value;
    const { data, error } = await client.auth.signUp({
      email, password: $('password').value, options: { emailRedirectTo: window.location.href.split('#')[0] },
    });
    if (error) return fail('sign up: ' + error.message);
    if (data.session) return showApp(data.session);
    $('signup-result').textContent = 'Check the mailbox: a confirmation email was sent to ' + email;
    $('mailbox-button').hidden = false;
  });
  $('mailbox-button').addEventListener('click', async () => {
    const email = $('email').value;
    const mailbox = await (await fetch(config.auth + '/__emulator/mailbox?to=' + encodeURIComponent(email))).json();
    const message = mailbox.messages.filter((m) => m.link).pop();
    if (!message) return fail('no email for ' + email + ' in the mailbox yet');
    window.location.href = message.link;
  });
  $('new-org-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await api('/api/organizations', { method: 'POST', body: JSON.stringify({ name: $('org-input').value }) });
    if (r.status !== 201) return fail('create organization answered ' + r.status + ': ' + JSON.stringify(r.body));
    const { data } = await client.auth.getSession();
    await showApp(data.session);
  });
  $('create-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await api('/api/organizations/' + config.orgId + '/knowledge', {
      method: 'POST', body: JSON.stringify({ title: $('title').value, content: $('content').value }),
    });
    if (r.status !== 201) return fail('create answered ' + r.status + ': ' + JSON.stringify(r.body));
    await refresh();
  });
  $('search-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await api('/api/organizations/' + config.orgId + '/knowledge/search?q=' + encodeURIComponent($('query').value));
    if (r.status !== 200) return fail('search answered ' + r.status + ': ' + JSON.stringify(r.body));
    list($('results'), r.body);
  });
  $('foreign-button').addEventListener('click', async () => {
    const r = await api('/api/organizations/' + config.acmeId + '/knowledge');
    $('foreign').textContent = r.status === 200
      ? 'allowed (' + r.status + '): a member of Acme'
      : 'refused: ' + r.status + ' ' + (r.body && r.body.code) + ' (request ' + r.requestId + ')';
  });
  $('signout-button').addEventListener('click', async () => {
    const old = token;
    // Through the API, so the API refuses the token at once; then supabase-js forgets the session.
    const r = await api('/api/auth/logout?scope=local', { method: 'POST' });
    await client.auth.signOut({ scope: 'local' });
    const again = await api('/api/me', { headers: { Authorization: 'Bearer ' + old } });
    $('app').hidden = true;
    $('signin').hidden = false;
    $('after-signout').textContent = 'signed out (' + r.status + '); the old token now gets '
      + again.status + ' ' + (again.body && again.body.code);
  });

  // Back from an email link: supabase-js has taken the session from the URL fragment, or the fragment
  // carries the auth service's error.
  const hash = new URLSearchParams(window.location.hash.slice(1));
  if (hash.get('error_description')) fail('email link: ' + hash.get('error_description'));
  const { data, error } = await client.auth.getSession();
  if (error) fail('session: ' + error.message);
  $('status').textContent = 'ready';
  if (data.session) await showApp(data.session);
}

main().catch((e) => fail(String(e)));
