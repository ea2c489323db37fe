// The demo driven in Debian's Chromium, headless, through Playwright:
// what a real browser does with our cookies, links, redirects and Referer.
//
// Needs a running demo (examples/demo/browser-test starts one) and:
//   DEMO_SHOP_PORT, DEMO_CHECKOUT_PORT, DEMO_BROWSER_FLAGS (file written by
//   the run script), DEMO_ARTIFACTS (screenshots of failed tests),
//   CHROMIUM (default /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const SHOP = `https://shop.example.com:${process.env.DEMO_SHOP_PORT}`;
const WWW = `https://www.example.com:${process.env.DEMO_SHOP_PORT}`;
const CHECKOUT = `https://checkout.example.net:${process.env.DEMO_CHECKOUT_PORT}`;
const ARTIFACTS = process.env.DEMO_ARTIFACTS || 'demo-artifacts';
const DAY = 86400;

let browser;

before(async () => {
  const flags = fs
    .readFileSync(process.env.DEMO_BROWSER_FLAGS, 'utf8')
    .split('\n')
    .filter(Boolean);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...flags,
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** Runs `fn` with a fresh browser profile; a screenshot of every open
 * page is kept when it fails. */
async function withBrowser(name, fn) {
  const context = await browser.newContext();
  try {
    await fn(context);
  } catch (e) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const [i, page] of context.pages().entries()) {
      const file = path.join(ARTIFACTS, `${name}-${i}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.error(`screenshot of ${page.url()}: ${file}`);
    }
    throw e;
  } finally {
    await context.close();
  }
}

/** What the page says about the identity it resolved. */
async function shown(page) {
  const text = async (id) => (await page.textContent(`#${id}`)).trim();
  return {
    clientId: await text('client-id'),
    sessionId: await text('session-id'),
    method: await text('method'),
    rejected: await text('rejected'),
  };
}

async function open(page, url) {
  const response = await page.goto(url);
  assert.equal(response.status(), 200, `${url}: HTTP ${response.status()}`);
  return shown(page);
}

test('the shop to checkout hand-off keeps the client id, and the shop keeps it on the next visit', async () => {
  await withBrowser('handoff', async (context) => {
    const page = await context.newPage();
    const first = await open(page, `${SHOP}/`);
    assert.equal(first.method, 'NEW');
    assert.match(first.clientId, /^\d+\.\d+$/);

    await page.click('#checkout');
    await page.waitForURL(`${CHECKOUT}/**`);
    const arrived = await shown(page);
    assert.equal(arrived.method, 'HANDOFF_TOKEN');
    assert.equal(arrived.clientId, first.clientId);
    assert.equal(arrived.sessionId, first.sessionId);
    // The page took the token out of the address bar.
    assert.equal(new URL(page.url()).search, '');

    // The checkout now has its own cookie ...
    const again = await open(page, `${CHECKOUT}/start`);
    assert.equal(again.method, 'COOKIE');
    assert.equal(again.clientId, first.clientId);

    // ... and the shop still knows the visitor.
    await page.click('#back');
    await page.waitForURL(`${SHOP}/`);
    const back = await shown(page);
    assert.equal(back.method, 'COOKIE');
    assert.equal(back.clientId, first.clientId);
    assert.equal(back.sessionId, first.sessionId);
  });
});

test('a redirect chain that drops the token still resolves through the referrer bridge', async () => {
  await withBrowser('bridge', async (context) => {
    const page = await context.newPage();
    const first = await open(page, `${SHOP}/`);
    const hops = [];
    page.on('request', (r) => {
      if (r.isNavigationRequest()) hops.push({ url: r.url(), referer: r.headers().referer });
    });
    await page.click('#checkout-partner');
    await page.waitForURL(`${CHECKOUT}/**`);
    // The chain went through the link service, and what reached the
    // checkout carried no parameter at all.
    assert.ok(
      hops.some((h) => h.url.startsWith('https://links.example.org')),
      JSON.stringify(hops),
    );
    assert.equal(new URL(hops.at(-1).url).search, '');
    const arrived = await shown(page);
    assert.equal(arrived.method, 'REFERRER_BRIDGE');
    assert.equal(arrived.clientId, first.clientId);
    // What the browser sent across sites: the shop's origin, no path.
    assert.equal((await page.textContent('#referer')).trim(), `${SHOP}/`);
  });
});

test('a replayed hand-off link opened in a fresh browser does not adopt the identity', async () => {
  let link;
  let original;
  await withBrowser('replay-first', async (context) => {
    const page = await context.newPage();
    original = await open(page, `${SHOP}/`);
    page.on('request', (r) => {
      if (r.url().startsWith(CHECKOUT) && r.url().includes('_sbt=')) link = r.url();
    });
    await page.click('#checkout');
    await page.waitForURL(`${CHECKOUT}/**`);
    assert.equal((await shown(page)).method, 'HANDOFF_TOKEN');
  });
  assert.ok(link, 'the hand-off link was seen');
  await withBrowser('replay-second', async (context) => {
    const page = await context.newPage();
    const replay = await open(page, link);
    assert.notEqual(replay.clientId, original.clientId);
    assert.equal(replay.method, 'NEW');
    assert.match(replay.rejected, /HANDOFF_TOKEN: REPLAYED/);
  });
});

test('the parent-domain cookie is shared by two subdomains of the shop', async () => {
  await withBrowser('subdomains', async (context) => {
    const page = await context.newPage();
    const shop = await open(page, `${SHOP}/`);
    const www = await open(page, `${WWW}/`);
    assert.equal(www.method, 'COOKIE');
    assert.equal(www.clientId, shop.clientId);
  });
});

test('the browser stored the cookies with the attributes that were sent', async () => {
  await withBrowser('attributes', async (context) => {
    const page = await context.newPage();
    await open(page, `${SHOP}/`);
    await page.click('#checkout');
    await page.waitForURL(`${CHECKOUT}/**`);
    const now = Date.now() / 1000;
    const cookies = await context.cookies();
    const own = cookies.filter((c) => c.name === '__Secure-sbid');
    // One identity cookie per site, on the registrable domain: the
    // browser accepted the Domain attribute for both.
    assert.deepEqual(own.map((c) => c.domain).sort(), ['.example.com', '.example.net']);
    for (const c of own) {
      assert.equal(c.secure, true, `${c.domain}: Secure`);
      assert.equal(c.httpOnly, true, `${c.domain}: HttpOnly`);
      assert.equal(c.sameSite, 'Lax', `${c.domain}: SameSite`);
      assert.equal(c.path, '/', `${c.domain}: Path`);
      assert.ok(
        Math.abs(c.expires - (now + 400 * DAY)) < DAY,
        `${c.domain}: expires in 400 days, got ${(c.expires - now) / DAY} days`,
      );
    }
    // document.cookie cannot read the identity cookie.
    assert.equal(await page.evaluate(() => document.cookie.includes('sbid')), false);
  });
});
