// Browser test of the booking page: two users in two browser contexts open the same show.
// User 1 holds seats and user 2 sees them turn unavailable without reloading (and hears it, through
// the polite live region); user 1 pays and both see them booked; user 2's attempt to take one is
// refused with a readable message. User 2 then holds the best available seats with the form and
// both maps show them. The seat map is walked with the keyboard alone, and axe-core checks the
// page (with seat attributes on the map) for serious or critical accessibility violations.
// Last, an admin puts another show on sale through a waiting room; a third user joins the queue,
// waits (position and wait shown live), is admitted, and books within the session.
//
// Usage: BASE_URL=http://127.0.0.1:PORT node booking.test.mjs   (ARTIFACTS=dir for screenshots)
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

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

// axe-core on the page as it is: no serious or critical violation (the others are printed).
async function accessible(page, what) {
  await page.addScriptTag({ path: AXE });
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  for (const v of found) console.log(`[axe ${what}] ${v.impact} ${v.id}: ${v.help} (${v.nodes.join('; ')})`);
  const bad = found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${what}: serious or critical accessibility violations`);
}

try {
  const one = await user('one');
  const two = await user('two');
  // Both open the first show (the page opens it by default); pick two free seats.
  await one.locator('.seat[data-status="AVAILABLE"]').first().waitFor();
  await two.locator('.seat[data-status="AVAILABLE"]').first().waitFor();
  const ids = await one.locator('.seat[data-status="AVAILABLE"]').evaluateAll((els) => els.slice(0, 2).map((e) => e.dataset.seat));
  assert.equal(ids.length, 2);

  // The map is a labelled grid, walked with the keyboard alone: one tab stop, arrows move,
  // Enter selects and deselects; every seat says row, number, category, price and status.
  assert.equal(await one.locator('#seatmap').getAttribute('role'), 'grid');
  assert.ok((await one.locator('#seatmap [role="row"]').count()) > 1);
  assert.equal(await one.locator('#seatmap .seat[tabindex="0"]').count(), 1);
  await one.locator('#seatmap .seat[tabindex="0"]').focus();
  const at = () => one.evaluate(() => document.activeElement.dataset.seat);
  const startSeat = await at();
  await one.keyboard.press('ArrowRight');
  const nextSeat = await at();
  assert.notEqual(nextSeat, startSeat, 'ArrowRight moves to the next seat');
  await one.keyboard.press('ArrowLeft');
  assert.equal(await at(), startSeat);
  await one.keyboard.press('ArrowDown');
  assert.notEqual(await at(), startSeat, 'ArrowDown moves to the row behind');
  await one.keyboard.press('ArrowUp');
  assert.equal(await at(), startSeat);
  await one.keyboard.press('Enter');
  assert.equal(await one.locator(`[data-seat="${startSeat}"]`).getAttribute('aria-pressed'), 'true');
  assert.match(await one.locator(`[data-seat="${startSeat}"]`).getAttribute('aria-label'), /^Row [A-Z0-9]+, seat \d+, [A-Z_]+, [^,]+, available(, (wheelchair space|companion seat|restricted view))*, selected$/);
  await one.keyboard.press('Enter');
  assert.equal(await one.locator(`[data-seat="${startSeat}"]`).getAttribute('aria-pressed'), 'false');
  assert.equal(await one.locator('#seatmap .seat[tabindex="0"]').count(), 1, 'still one tab stop');
  await accessible(one, 'seat map');

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
  assert.equal(await two.locator(`[data-seat="${ids[0]}"]`).getAttribute('aria-disabled'), 'true');
  const label = (await two.locator(`[data-seat="${ids[0]}"]`).getAttribute('title')).split(' ')[0];
  assert.match(await two.locator('#message').innerText(), new RegExp(`${label} was just taken`));
  // The selected seat's change is announced politely, in words.
  await two.waitForFunction((l) => document.querySelector('#map-live').textContent.includes(`Seat ${l} is now held by someone else`), label, { timeout: 5000 });
  assert.equal(await two.locator('#map-live').getAttribute('aria-live'), 'polite');
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

  // Best available: user 2 asks for the best 3 seats; the server picks and holds them, user 2's
  // map shows them as theirs at once and user 1 sees them held live.
  await two.fill('#best-count', '3');
  await two.getByRole('button', { name: 'Hold best seats' }).click();
  await two.getByText('Held the best available').waitFor({ timeout: 5000 });
  const best = await two.locator('.seat[data-mine="true"][data-status="HELD"]').evaluateAll((els) => els.map((e) => e.dataset.seat));
  assert.equal(best.length, 3, 'three seats held by me on the map');
  for (const id of best) {
    await one.waitForFunction((id) => document.querySelector(`[data-seat="${id}"]`).dataset.status === 'HELD', id, { timeout: 5000 });
  }
  assert.match(await two.locator('#countdown').innerText(), /^\d+:\d\d$/);
  await shot(two, '6-user2-best-available');
  await two.getByRole('button', { name: 'Release' }).click();
  await two.getByText('Seats released.').waitFor();

  // A screen with wheelchair spaces, companion seats and restricted views (the demo's Grand):
  // marks on the seats, words in their labels and in the legend.
  const grand = two.locator('.show-list button', { hasText: 'Grand' }).first();
  await grand.click();
  await two.waitForFunction(() => document.querySelector('#map-sub').textContent.includes('Grand'), null, { timeout: 5000 });
  const marked = (mark) => two.locator('[role="gridcell"]', { has: two.locator('.mark', { hasText: mark }) }).first().locator('.seat');
  assert.match(await marked('♿').getAttribute('aria-label'), /wheelchair space/);
  assert.match(await marked('C').getAttribute('aria-label'), /companion seat/);
  assert.match(await marked('◐').getAttribute('aria-label'), /restricted view/);
  assert.match(await two.locator('#legend').innerText(), /Wheelchair space[\s\S]*Companion seat[\s\S]*Restricted view/);
  await accessible(two, 'seat map with seat attributes');
  await shot(two, '7-seat-attributes');

  // The waiting room. An admin opens a show's sale in 10 s through a queue (600 a minute).
  const admin = await browser.newPage();
  await admin.goto(BASE + '/');
  const queued = await admin.evaluate(async ({ email, password }) => {
    const call = async (query, variables, token) => {
      const headers = { 'Content-Type': 'application/json' };
      if (token) headers.Authorization = 'Bearer ' + token;
      const res = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
      return res.json();
    };
    const login = await call('mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }', { e: email, p: password });
    const token = login.data.logIn.token;
    const shows = await call('{ shows(first: 20) { edges { node { id } } } }', {}, token);
    const id = shows.data.shows.edges[4].node.id;
    const at = new Date(Date.now() + 10000).toISOString();
    const set = await call('mutation($s: ID!, $at: DateTime!) { setOnSale(showId: $s, opensAt: $at, admitPerMinute: 600, sessionMinutes: 10, queueEnabled: true) { id } }', { s: id, at }, token);
    return { id, errors: set.errors };
  }, { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD });
  assert.equal(queued.errors, undefined, JSON.stringify(queued.errors));
  const three = await user('three');
  // A slow answer for a show the user has already left must not bring it back: the map of
  // another show is held up 1.5 s while the user moves on to the queued one.
  const other = await three.locator('.show-list button[data-show]').evaluateAll(
    (bs, q) => bs.map((b) => b.dataset.show).find((id) => id !== q), queued.id);
  await three.route('**/graphql', async (route) => {
    const body = route.request().postData() || '';
    if (body.includes('seatLayout') && body.includes(JSON.stringify(other))) await new Promise((r) => setTimeout(r, 1500));
    await route.continue();
  });
  await three.locator(`.show-list button[data-show="${other}"]`).click();
  await three.locator(`.show-list button[data-show="${queued.id}"]`).click();
  await three.getByRole('button', { name: 'Join the queue' }).waitFor();
  await three.waitForTimeout(2000);
  await three.unroute('**/graphql');
  assert.equal(await three.locator('.show-list button[aria-current="true"]').getAttribute('data-show'), queued.id,
    'the show last opened stays open when an earlier one answers late');
  await three.getByRole('button', { name: 'Join the queue' }).waitFor();
  assert.equal(await three.locator('#map-area').isHidden(), true, 'no seat map before admission');
  await three.getByRole('button', { name: 'Join the queue' }).click();
  // Waiting (before the opening, or behind others), or — on a slow machine that got here after
  // the opening — admitted at once.
  // (The waiting text, not the invitation to "Join the queue", which also contains "in the queue".)
  await three.waitForFunction(() => /^You are (in the queue|number)/.test(document.querySelector('#queue-status').textContent)
    || !document.querySelector('#map-area').hidden, null, { timeout: 15000 });
  if (await three.locator('#map-area').isHidden()) {
    await accessible(three, 'waiting room');
    await shot(three, '8-waiting-room');
  } else {
    console.log('browser test: admitted before the waiting screen could be checked (slow start)');
  }
  // Admitted at the opening: the map appears with the session's countdown.
  await three.locator('#map-area').waitFor({ state: 'visible', timeout: 60000 }).catch(async (e) => {
    // What the page said and showed, for the log: a waiting room that never admits is hard to
    // read from a timeout alone.
    const seen = await three.evaluate(() => ({
      queue: document.querySelector('#queue-status').textContent,
      message: document.querySelector('#message').textContent,
      open: document.querySelector('.show-list button[aria-current="true"]')?.dataset.show,
    }));
    console.error('browser test: never admitted;', JSON.stringify({ ...seen, queued: queued.id }));
    throw e;
  });
  await three.getByText('Your shopping session ends in').waitFor();
  const free = await three.locator('.seat[data-status="AVAILABLE"]').first().getAttribute('data-seat');
  await three.locator(`[data-seat="${free}"]`).click();
  await three.getByRole('button', { name: 'Hold selected seats' }).click();
  await three.getByText('Pay before the timer runs out').waitFor();
  await three.getByRole('button', { name: /^Pay/ }).click();
  await three.getByText('Booked!').waitFor({ timeout: 10000 });
  await shot(three, '9-admitted-and-booked');

  // The GraphQL IDE renders from the binary's own assets (no CDN).
  const ide = await browser.newPage({ viewport: { width: 1300, height: 800 } });
  ide.on('pageerror', (e) => pageErrors.push(`[ide] ${e.message}`));
  const failed = [];
  ide.on('requestfailed', (r) => failed.push(r.url()));
  await ide.goto(BASE + '/graphql');
  await ide.waitForSelector('.graphiql-container', { timeout: 15000 });
  assert.deepEqual(failed, []);
  await shot(ide, '10-graphiql');
  assert.deepEqual(pageErrors, [], 'no uncaught error on any page');
  // The page stays within the server's subscriptions per connection: none of its live maps,
  // counts or waiting-room tickets was refused. (With a live count for each of 20 listed shows,
  // the open map's and the waiting room's subscriptions were over the cap of 20 and refused, and
  // now and then an admitted user's map never appeared.)
  const metrics = await (await fetch(BASE + '/metrics')).text();
  const refused = metrics.split('\n').filter((l) => l.startsWith('websocket_refusals_total') && l.includes('subscriptions_per_connection'));
  assert.deepEqual(refused.filter((l) => !/ 0$/.test(l)), [], 'no subscription refused');
  console.log('browser test passed; screenshots in', ARTIFACTS);
} finally {
  await browser.close();
}
