// The dev demo page driven in headless Chromium (the system's, through playwright-core), as a newcomer uses it:
// sign up, confirm the email from the emulator's mailbox, sign out and back in with the password, create an
// organization, add / list / search knowledge, see a foreign organization's 403, sign out and see the old
// token refused. Run by crates/intellifill/tests/it/browser.rs, which starts the API, the auth emulator and a
// static server for the page on an origin of its own, and passes:
//   DEMO_URL        the page (another origin than the API: every API call is a CORS call)
//   DEMO_EMAIL      a new address to sign up with; DEMO_PASSWORD its password
//   SCREENSHOT_DIR  where each step's screenshot goes (NN-step.png)
//   CHROMIUM_BIN    the browser (default /usr/bin/chromium)
//   SAME_ORIGIN=1   accept a page on the API's origin (`intellifill dev`'s own page at DEMO_PAGE_URL)
// Exits non-zero at the first step that does not show what it should, naming the step.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const demoUrl = env('DEMO_URL');
const email = env('DEMO_EMAIL');
const password = env('DEMO_PASSWORD');
const shots = env('SCREENSHOT_DIR');
mkdirSync(shots, { recursive: true });

// A fresh profile each run: nothing left over from an earlier run (session, cache) can make a step pass.
const profile = mkdtempSync(path.join(tmpdir(), 'intellifill-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1100, height: 1300 },
  timeout: 60_000,
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(20_000);

// Everything the page logs as an error, or throws: any is a failure (a CSP or CORS refusal shows up here).
// Chromium also logs each answer with an error status, some of which the steps expect (the 401 of the old
// token, the 403 of the foreign organization, the auth service's answer to signing out a session the API
// already ended): those are checked by what the page shows instead.
const problems = [];
const expectedStatus = /^Failed to load resource: the server responded with a status of 40[13] /;
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  if (m.type() === 'error' && !expectedStatus.test(m.text())) problems.push(`console: ${m.text()}`);
});
// The API calls the page made from its own origin, to show CORS was exercised.
const crossOrigin = new Set();
page.on('request', (r) => {
  const origin = new URL(r.url()).origin;
  if (origin !== new URL(demoUrl).origin) crossOrigin.add(`${r.method()} ${origin}${new URL(r.url()).pathname}`);
});

let n = 0;
async function step(name, action, check) {
  n += 1;
  const label = `${String(n).padStart(2, '0')}-${name}`;
  try {
    await action();
    await check();
    const shown = (await page.locator('#error').textContent()).trim();
    if (shown) throw new Error(`the page shows an error: ${shown}`);
    if (problems.length) throw new Error(problems.join('\n'));
  } catch (e) {
    await page.screenshot({ path: path.join(shots, `${label}-FAILED.png`), fullPage: true }).catch(() => {});
    console.error(`step ${label} failed: ${e.message}`);
    console.error(`page text:\n${await page.locator('body').innerText().catch(() => '?')}`);
    throw e;
  }
  await page.screenshot({ path: path.join(shots, `${label}.png`), fullPage: true });
  console.log(`ok ${label}`);
}
const text = (selector, expected) => page.locator(selector).filter({ hasText: expected }).waitFor();
const visible = (selector) => page.locator(selector).waitFor({ state: 'visible' });

let status = 0;
try {
  await step('loaded', () => page.goto(demoUrl), () => text('#status', 'ready'));
  const config = await page.evaluate(async () => (await fetch('dev-config.json')).json());
  // The test serves the page from an origin of its own; SAME_ORIGIN=1 lets the spec run against the page of
  // a running `intellifill dev` (the API's own origin) too.
  if (new URL(config.api).origin === new URL(demoUrl).origin && process.env.SAME_ORIGIN !== '1') {
    throw new Error('the page and the API share an origin: CORS would not be exercised (SAME_ORIGIN=1 allows it)');
  }

  await step('signed-up', async () => {
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('#signup-button');
  }, () => text('#signup-result', 'confirmation email was sent'));

  // The link in the mailbox: the emulator's /verify, which redirects back with the session in the fragment.
  await step('email-confirmed', () => page.click('#mailbox-button'), async () => {
    await visible('#app');
    await text('#who', email);
    await text('#me', email);
    await visible('#new-org');
  });

  await step('signed-out-after-confirmation', () => page.click('#signout-button'),
    () => text('#after-signout', 'the old token now gets 401'));

  await step('signed-in', async () => {
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('#signin-button');
  }, () => text('#who', email));

  await step('organization-created', async () => {
    await page.fill('#org-input', 'Browser Test Co');
    await page.click('#new-org-button');
  }, () => text('#org-name', 'Browser Test Co'));

  await step('knowledge-created', async () => {
    await page.fill('#title', 'Shipping policy');
    await page.fill('#content', 'Parcels leave the warehouse within two business days.');
    await page.click('#create-button');
  }, () => text('#knowledge li', 'Shipping policy: Parcels leave the warehouse'));

  await step('knowledge-searched', async () => {
    await page.fill('#query', 'warehouse');
    await page.click('#search-button');
  }, () => text('#results li', 'Shipping policy'));

  await step('foreign-organization-refused', () => page.click('#foreign-button'),
    () => text('#foreign', 'refused: 403 NOT_ORG_MEMBER'));

  await step('signed-out', () => page.click('#signout-button'), async () => {
    await text('#after-signout', 'the old token now gets 401');
    await visible('#signin');
  });
  console.log(`cross-origin calls: ${[...crossOrigin].sort().join(', ')}`);
  console.log(`screenshots: ${shots}`);
} catch (e) {
  console.error(e.message);
  status = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(status);
