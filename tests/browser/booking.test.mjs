// Browser test of the booking page: two users in two browser contexts open the same show.
// User 1 holds seats and user 2 sees them turn unavailable without reloading; user 1 pays and
// both see them booked; user 2's attempt to take one is refused with a readable message.
//
// Usage: BASE_URL=http://127.0.0.1:PORT node booking.test.mjs   (ARTIFACTS=dir for screenshots)
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';

const BASE = process.env.BASE_URL || 'http://127.0.0.1:8000';
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const shot = (page, name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const stamp = Date.now();
// Every uncaught error of a page fails the test (a page that throws may still look right).
const pageErrors = [];

async function user(name) {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => {
    console.error(`[${name}] page error:`, e.message);
    pageErrors.push(`[${name}] ${e.message}`);
  });
  await page.goto(BASE + '/');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.fill('#email', `${name}-${stamp}@example.com`);
  await page.fill('#password', 'correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByText('Welcome!').waitFor();
  return page;
}


try {
  const one = await user('one');
  const two = await user('two');
  // Both open the first show (the page opens it by default); pick two free seats.
  await one.locator('.seat[data-status="AVAILABLE"]').first().waitFor();
  await two.locator('.seat[data-status="AVAILABLE"]').first().waitFor();
  const ids = await one.locator('.seat[data-status="AVAILABLE"]').evaluateAll((els) => els.slice(0, 2).map((e) => e.dataset.seat));
  assert.equal(ids.length, 2);

  // User 2 has picked one of them, but user 1 is quicker and holds both.
  await two.locator(`[data-seat="${ids[0]}"]`).click();
  assert.equal(await two.locator(`[data-seat="${ids[0]}"]`).getAttribute('aria-pressed'), 'true');
  for (const id of ids) await one.locator(`[data-seat="${id}"]`).click();
  await one.getByRole('button', { name: 'Hold selected seats' }).click();
  await one.getByText('Pay before the timer runs out').waitFor();
  assert.match(await one.locator('#countdown').innerText(), /^\d+:\d\d$/);

  // User 2 sees them held, live, without reloading, and is told in words.
  for (const id of ids) {
    await two.waitForFunction((id) => document.querySelector(`[data-seat="${id}"]`).dataset.status === 'HELD', id, { timeout: 5000 });
  }
  assert.equal(await two.locator(`[data-seat="${ids[0]}"]`).isDisabled(), true);
  const label = (await two.locator(`[data-seat="${ids[0]}"]`).getAttribute('title')).split(' ')[0];
  assert.match(await two.locator('#message').innerText(), new RegExp(`${label} was just taken`));
  await shot(one, '1-user1-holds');
  await shot(two, '2-user2-sees-held');

  // User 1 pays; both see the seats booked.
  await one.getByRole('button', { name: /^Pay/ }).click();
  await one.getByText('Booked!').waitFor({ timeout: 10000 });
  for (const page of [one, two]) {
    for (const id of ids) {
      await page.waitForFunction((id) => document.querySelector(`[data-seat="${id}"]`).dataset.status === 'BOOKED', id, { timeout: 5000 });
    }
  }
  await one.locator('#bookings').getByText('confirmed').waitFor();
  await shot(one, '3-user1-booked');
  await shot(two, '4-user2-sees-booked');

  // User 2 tries to take a booked seat anyway (as a page that missed the event would): the
  // server refuses, naming the seat in words.
  const refusal = await two.evaluate(async ({ id, show }) => {
    const res = await fetch('/graphql', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + localStorage.getItem('boxoffice.token') },
      body: JSON.stringify({ query: 'mutation($s: ID!, $x: [ID!]!) { holdSeats(showId: $s, seatIds: $x) { id } }', variables: { s: show, x: [id] } }),
    });
    return (await res.json()).errors[0];
  }, { id: ids[0], show: await two.locator('.show-list button[aria-current="true"]').getAttribute('data-show') });
  assert.equal(refusal.extensions.code, 'SEATS_UNAVAILABLE');
  assert.match(refusal.message, new RegExp(`${label} was just taken`));
  await shot(two, '5-user2-refused');

  // The GraphQL IDE renders from the binary's own assets (no CDN).
  const ide = await browser.newPage({ viewport: { width: 1300, height: 800 } });
  ide.on('pageerror', (e) => pageErrors.push(`[ide] ${e.message}`));
  const failed = [];
  ide.on('requestfailed', (r) => failed.push(r.url()));
  await ide.goto(BASE + '/graphql');
  await ide.waitForSelector('.graphiql-container', { timeout: 15000 });
  assert.deepEqual(failed, []);
  await shot(ide, '6-graphiql');
  assert.deepEqual(pageErrors, [], 'no uncaught error on any page');
  console.log('browser test passed; screenshots in', ARTIFACTS);
} finally {
  await browser.close();
}
