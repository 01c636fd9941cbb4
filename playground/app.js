// boxoffice booking page: plain JavaScript, no build step. Queries and mutations over
// POST /graphql; live seat maps over graphql-transport-ws (vendored graphql-ws client).
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const state = {
    token: localStorage.getItem('boxoffice.token'),
    me: null,
    shows: [],
    after: null,
    show: null,        // { id, version, seats: Map(id -> seat), ... }
    // The show the user last opened. Answers for any other show (a slower request started
    // before the user switched) are dropped: they must not bring the old show back.
    wanted: null,
    selected: new Set(),
    hold: null,        // { id, expiresAt, totalCents, seatIds }
    payKey: null,
    timer: null,
    mapSub: null,
    mapGen: 0,         // bumped by each subscribeMap: an ended stream resubscribes only if current
    countSubs: new Map(),
  };

  // ---------- GraphQL over HTTP ----------
  class GqlError extends Error {
    constructor(err) { super(err.message); this.code = (err.extensions || {}).code; this.ext = err.extensions || {}; }
  }
  async function gql(query, variables) {
    const headers = { 'Content-Type': 'application/json' };
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    let res;
    try {
      res = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    } catch (e) {
      throw new GqlError({ message: 'The server cannot be reached. Check your connection and try again.', extensions: { code: 'NETWORK' } });
    }
    const body = await res.json().catch(() => ({}));
    if (body.errors && body.errors.length) throw new GqlError(body.errors[0]);
    return body.data;
  }

  // ---------- live updates ----------
  let ws = null;
  function wsClient() {
    if (ws) return ws;
    ws = graphqlWs.createClient({
      url: location.origin.replace(/^http/, 'ws') + '/graphql',
      lazy: true,
      retryAttempts: Infinity,
      connectionParams: () => (state.token ? { Authorization: 'Bearer ' + state.token } : {}),
      on: { connected: () => { if (state.show) reloadMap(); } },
    });
    return ws;
  }
  function resetWs() {
    if (ws) { ws.dispose(); ws = null; }
    if (state.show) subscribeMap(state.show.id);
    subscribeCounts();
  }
  const SEAT_UPDATES = `subscription($show: ID!) { seatUpdates(showId: $show) {
    showId version availableSeats seats { id status heldByMe } } }`;

  // How far below the map's version an event may be and still be one that waited in the buffers.
  const STALE_WINDOW = 4096;

  function subscribeMap(showId) {
    const gen = ++state.mapGen;
    if (state.mapSub) state.mapSub();
    // The server ends a stream it cannot keep exact (too slow, or its feed was interrupted):
    // re-read the map and subscribe again, unless this stream was replaced or the show left.
    const again = (ms) => setTimeout(() => {
      if (gen === state.mapGen && state.show && state.show.id === showId) { subscribeMap(showId); reloadMap(); }
    }, ms);
    state.mapSub = wsClient().subscribe({ query: SEAT_UPDATES, variables: { show: showId } }, {
      next: ({ data, errors }) => {
        if (errors || !data) { reloadMap(); return; }
        applyUpdate(data.seatUpdates);
      },
      error: () => again(1000),
      complete: () => again(200),
    });
  }

  // The server allows 20 subscriptions on one connection (WS_SUBSCRIPTIONS_PER_CONNECTION) and
  // refuses the rest: live counts for the first 16 shows of the list, so that the open map, the
  // waiting room and a change of show always fit (with 20 counts, the map's or the waiting room's
  // subscription was refused). The other shows keep the counts of the list's last read.
  const LIVE_COUNTS = 16;

  function subscribeCounts() {
    for (const stop of state.countSubs.values()) stop();
    state.countSubs.clear();
    for (const s of state.shows.slice(0, LIVE_COUNTS)) {
      const stop = wsClient().subscribe({ query: 'subscription($show: ID!) { seatUpdates(showId: $show) { showId availableSeats } }', variables: { show: s.id } }, {
        next: ({ data }) => {
          if (!data) return;
          const show = state.shows.find((x) => x.id === data.seatUpdates.showId);
          if (show) { show.availableSeats = data.seatUpdates.availableSeats; renderShowLeft(show); }
        },
        error: () => {}, complete: () => {},
      });
      state.countSubs.set(s.id, stop);
    }
  }

  function applyUpdate(u) {
    const show = state.show;
    if (!show || u.showId !== show.id) return;
    // At or below ours: an event that waited while we re-read (a hold store that lost its data
    // restarts its versions, but the server then ends the stream and we re-read on resubscribing).
    if (u.version <= show.version && show.version - u.version <= STALE_WINDOW) return;
    // A gap: we missed something. Re-read.
    if (u.version !== show.version + 1) { reloadMap(); return; }
    show.version = u.version;
    const own = [];
    let others = 0;
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.seat : null;
    for (const s of u.seats) {
      const seat = show.seats.get(s.id);
      if (!seat) continue;
      seat.status = s.status; seat.heldByMe = s.heldByMe;
      if (s.id === focused || state.selected.has(s.id)) own.push(`Seat ${seat.label} is now ${seatStatusWords(seat)}`);
      else others += 1;
      if (s.status !== 'AVAILABLE' && state.selected.has(s.id) && !s.heldByMe) {
        state.selected.delete(s.id);
        say(`${seat.label} was just taken by someone else.`, 'error');
      }
      paintSeat(seat);
    }
    const listed = state.shows.find((x) => x.id === show.id);
    if (listed) { listed.availableSeats = u.availableSeats; renderShowLeft(listed); }
    renderSelection();
    announceChanges(own, others);
  }

  // ---------- account ----------
  function renderAccount() {
    const el = $('account');
    el.innerHTML = '';
    if (state.me) {
      const who = document.createElement('span');
      who.textContent = state.me.email;
      const out = document.createElement('button');
      out.className = 'secondary'; out.textContent = 'Log out';
      out.onclick = () => { state.token = null; state.me = null; localStorage.removeItem('boxoffice.token'); renderAccount(); resetWs(); reloadMap(); renderBookings([]); if (state.wanted) enterRoom(state.wanted); };
      el.append(who, out);
      $('auth').hidden = true;
    } else {
      const b = document.createElement('button');
      b.textContent = 'Sign in';
      b.onclick = () => { $('auth').hidden = false; $('email').focus(); };
      el.append(b);
    }
  }

  async function loadMe() {
    if (!state.token) { state.me = null; renderAccount(); return; }
    try {
      const d = await gql('{ me { id email name } }');
      state.me = d.me;
    } catch (e) {
      state.token = null; localStorage.removeItem('boxoffice.token'); state.me = null;
    }
    renderAccount();
    loadBookings();
  }

  $('auth-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const mode = (ev.submitter && ev.submitter.dataset.mode) || 'logIn';
    const email = $('email').value, password = $('password').value;
    try {
      const d = await gql(`mutation($e: String!, $p: String!) { ${mode}(email: $e, password: $p) { token user { id email } } }`, { e: email, p: password });
      state.token = d[mode].token; state.me = d[mode].user;
      localStorage.setItem('boxoffice.token', state.token);
      $('password').value = '';
      renderAccount(); resetWs(); reloadMap(); loadBookings();
      if (state.wanted) enterRoom(state.wanted);
      say(mode === 'signUp' ? 'Welcome! Your account is ready.' : 'Signed in.', 'ok');
    } catch (e) { say(e.message, 'error'); }
  });

  // ---------- shows ----------
  const fmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  async function loadShows(more) {
    const d = await gql(`query($after: String) { shows(first: 20, after: $after) {
      edges { node { id startsAt movie { title durationMinutes } screen { name venue { name city } } availableSeats totalSeats } }
      pageInfo { hasNextPage endCursor } } }`, { after: more ? state.after : null });
    const nodes = d.shows.edges.map((e) => e.node);
    state.shows = more ? state.shows.concat(nodes) : nodes;
    state.after = d.shows.pageInfo.endCursor;
    $('more').hidden = !d.shows.pageInfo.hasNextPage;
    renderShows();
    subscribeCounts();
  }
  function renderShowLeft(s) {
    const el = document.querySelector(`[data-show-left="${s.id}"]`);
    if (el) el.textContent = `${s.availableSeats} of ${s.totalSeats} seats free`;
  }
  function renderShows() {
    const ul = $('shows');
    ul.innerHTML = '';
    for (const s of state.shows) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.dataset.show = s.id;
      b.setAttribute('aria-current', state.show && state.show.id === s.id ? 'true' : 'false');
      b.innerHTML = `<span class="when"></span><span class="title"></span><span class="where muted"></span><span class="left" data-show-left="${s.id}"></span>`;
      b.querySelector('.when').textContent = fmt.format(new Date(s.startsAt));
      b.querySelector('.title').textContent = s.movie.title;
      b.querySelector('.where').textContent = `${s.screen.venue.name}, ${s.screen.venue.city} · ${s.screen.name}`;
      b.onclick = () => openShow(s.id);
      li.append(b); ul.append(li);
      renderShowLeft(s);
    }
  }
  $('more').onclick = () => loadShows(true);

  // ---------- seat map ----------
  // The compact map: the layout (never changes for a show) and one status letter per seat.
  const SHOW = `query($id: ID!) { show(id: $id) { id startsAt totalSeats availableSeats
    onSale { queueEnabled opensAt admitPerMinute }
    movie { title } screen { name venue { name } } prices { category priceCents }
    seatLayout { label rowIndex seats { id number column category priceCents wheelchair companion restrictedView } }
    seatStatuses { version holdsKnown statuses } } }`;
  const LETTER = { A: ['AVAILABLE', false], H: ['HELD', false], M: ['HELD', true], B: ['BOOKED', false] };
  // The layout and the status letters, as the seat objects the page works with.
  function seatsOf(show) {
    const out = [];
    for (const row of show.seatLayout) {
      for (const x of row.seats) {
        const [status, heldByMe] = LETTER[show.seatStatuses.statuses[out.length]] || LETTER.A;
        out.push({ ...x, row: row.label, rowIndex: row.rowIndex, label: `${row.label}${x.number}`, status, heldByMe });
      }
    }
    return out;
  }
  const money = (c) => (c / 100).toLocaleString(undefined, { style: 'currency', currency: 'EUR' });

  async function openShow(id) {
    state.wanted = id;
    state.selected.clear();
    clearHold();
    await reloadMap(id);
    if (id !== state.wanted) return;
    subscribeMap(id);
    await enterRoom(id);
    renderShows();
    const first = $('seatmap').querySelector('.seat[tabindex="0"]'); if (first) first.focus();
  }

  async function reloadMap(id) {
    id = id || state.wanted;
    if (!id) return;
    const d = await gql(SHOW, { id });
    if (id !== state.wanted) return;
    if (!d.show) { say('This show no longer exists.', 'error'); return; }
    const s = d.show;
    s.seats = seatsOf(s);
    s.version = s.seatStatuses.version;
    s.holdsKnown = s.seatStatuses.holdsKnown;
    state.show = { id: s.id, version: s.version, seats: new Map(s.seats.map((x) => [x.id, x])), prices: s.prices, raw: s };
    clearTimeout(state.degradedRetry);
    if (!s.holdsKnown) {
      // The hold store is unreachable: booked seats are exact, holds are not. Say so, retry soon.
      say('Live seat status is unavailable right now: seats others hold may look free and holding will fail. Retrying…', 'error');
      state.degradedRetry = setTimeout(() => reloadMap(s.id).catch(() => {}), 5000);
      state.degraded = true;
    } else if (state.degraded) {
      state.degraded = false;
      say('Live seat status is back.');
    }
    $('map-title').textContent = `${s.movie.title}`;
    $('map-sub').textContent = `${fmt.format(new Date(s.startsAt))} · ${s.screen.venue.name} · ${s.screen.name}`;
    const cats = s.prices.map((p) => p.category);
    $('legend').innerHTML = '';
    const legend = [['Available', 'var(--free)'], ['Held by others', 'var(--held)'], ['Yours', 'var(--mine)'], ['Booked', 'var(--booked)']];
    for (const [t, c] of legend) { const sp = document.createElement('span'); sp.style.setProperty('--c', c); sp.textContent = t; $('legend').append(sp); }
    for (const [flag, mark, text] of MARKS) {
      if (!s.seats.some((x) => x[flag])) continue;
      const sp = document.createElement('span'); sp.className = 'mark-key'; sp.textContent = `${mark} ${text}`; $('legend').append(sp);
    }
    for (const p of s.prices) { const sp = document.createElement('span'); sp.className = 'muted'; sp.textContent = `${p.category} ${money(p.priceCents)}`; $('legend').append(sp); }
    const catSelect = $('best-category');
    catSelect.innerHTML = '<option value="">Any</option>';
    for (const c of cats) { const o = document.createElement('option'); o.value = c; o.textContent = c; catSelect.append(o); }
    const maxCol = Math.max(...s.seats.map((x) => x.column)) + 1;
    const map = $('seatmap');
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.seat : null;
    map.innerHTML = '';
    map.style.gridTemplateColumns = `24px repeat(${maxCol}, 28px) 24px`;
    const rows = new Map();
    for (const seat of s.seats) { if (!rows.has(seat.rowIndex)) rows.set(seat.rowIndex, []); rows.get(seat.rowIndex).push(seat); }
    // An ARIA grid: one row per seat row (a row header, then a cell per seat); one seat is in
    // the tab order at a time and the arrow keys move between seats (see seatKeys).
    state.show.rows = [];
    for (const [ri, seats] of [...rows.entries()].sort((a, b) => a[0] - b[0])) {
      const row = document.createElement('div');
      row.setAttribute('role', 'row');
      const label = document.createElement('div');
      label.className = 'rowlabel'; label.textContent = seats[0].row;
      label.setAttribute('role', 'rowheader');
      label.setAttribute('aria-label', `Row ${seats[0].row}`);
      label.style.gridRow = ri + 1; label.style.gridColumn = 1;
      row.append(label);
      for (const seat of seats) {
        const cell = document.createElement('div');
        cell.setAttribute('role', 'gridcell');
        cell.style.gridRow = ri + 1; cell.style.gridColumn = seat.column + 2;
        const b = document.createElement('button');
        b.className = `seat cat-${cats.indexOf(seat.category)}`;
        b.dataset.seat = seat.id;
        b.tabIndex = -1;
        b.textContent = seat.number;
        for (const [flag, mark] of MARKS) {
          if (seat[flag]) { const m = document.createElement('span'); m.className = 'mark'; m.setAttribute('aria-hidden', 'true'); m.textContent = mark; cell.append(m); }
        }
        b.onclick = () => toggle(seat.id);
        cell.prepend(b);
        row.append(cell);
      }
      map.append(row);
      state.show.rows.push(seats.map((x) => x.id));
    }
    for (const seat of s.seats) paintSeat(seat);
    const start = (focused && state.show.seats.has(focused)) ? focused : (s.seats.find((x) => x.status === 'AVAILABLE') || s.seats[0] || {}).id;
    if (start) rove(start, focused === start);
    // Seats we had selected that someone took meanwhile are dropped.
    for (const id2 of [...state.selected]) {
      const seat = state.show.seats.get(id2);
      if (!seat || seat.status !== 'AVAILABLE') state.selected.delete(id2);
    }
    renderSelection();
  }

  // Seat attributes: a mark on the seat and words in its label, never colour alone.
  const MARKS = [['wheelchair', '♿', 'Wheelchair space'], ['companion', 'C', 'Companion seat'], ['restrictedView', '◐', 'Restricted view']];

  function seatStatusWords(seat) {
    return seat.status === 'AVAILABLE' ? 'available' : seat.status === 'BOOKED' ? 'booked' : seat.heldByMe ? 'held by you' : 'held by someone else';
  }

  function paintSeat(seat) {
    const b = document.querySelector(`[data-seat="${seat.id}"]`);
    if (!b) return;
    b.dataset.status = seat.status;
    b.dataset.mine = String(!!seat.heldByMe);
    const sel = state.selected.has(seat.id);
    b.setAttribute('aria-pressed', String(sel));
    // aria-disabled rather than disabled: an unavailable seat stays reachable with the keyboard
    // and a screen reader says why it cannot be chosen.
    b.setAttribute('aria-disabled', String(seat.status !== 'AVAILABLE' && !sel));
    const marks = MARKS.filter(([flag]) => seat[flag]).map(([, , text]) => text.toLowerCase());
    const extra = marks.length ? `, ${marks.join(', ')}` : '';
    // The visible number is part of the name (WCAG 2.5.3, label in name).
    b.setAttribute('aria-label', `Row ${seat.row}, seat ${seat.number}, ${seat.category}, ${money(seat.priceCents)}, ${seatStatusWords(seat)}${extra}${sel ? ', selected' : ''}`);
    b.title = `${seat.label} · ${seat.category} · ${money(seat.priceCents)}${extra ? ' · ' + marks.join(', ') : ''}`;
  }

  // ---------- keyboard: a roving tab stop over the seat grid ----------
  function rove(id, focus) {
    for (const el of document.querySelectorAll('#seatmap .seat[tabindex="0"]')) el.tabIndex = -1;
    const b = document.querySelector(`[data-seat="${id}"]`);
    if (!b) return;
    b.tabIndex = 0;
    if (focus) b.focus();
  }

  function seatKeys(ev) {
    const id = ev.target && ev.target.dataset ? ev.target.dataset.seat : null;
    if (!id || !state.show || !state.show.rows) return;
    const rows = state.show.rows;
    const r = rows.findIndex((row) => row.includes(id));
    if (r < 0) return;
    const c = rows[r].indexOf(id);
    const nearest = (row) => {
      const col = state.show.seats.get(id).column;
      return row.reduce((best, x) => (Math.abs(state.show.seats.get(x).column - col) < Math.abs(state.show.seats.get(best).column - col) ? x : best), row[0]);
    };
    let target = null;
    switch (ev.key) {
      case 'ArrowLeft': target = rows[r][c - 1]; break;
      case 'ArrowRight': target = rows[r][c + 1]; break;
      case 'ArrowUp': target = r > 0 ? nearest(rows[r - 1]) : null; break;
      case 'ArrowDown': target = r + 1 < rows.length ? nearest(rows[r + 1]) : null; break;
      case 'Home': target = ev.ctrlKey ? rows[0][0] : rows[r][0]; break;
      case 'End': target = ev.ctrlKey ? rows[rows.length - 1].slice(-1)[0] : rows[r].slice(-1)[0]; break;
      default: return;
    }
    ev.preventDefault();
    if (target) rove(target, true);
  }
  $('seatmap').addEventListener('keydown', seatKeys);

  // Status changes are announced politely: the seats you have selected or are on, in words;
  // the rest as a count at most every few seconds (a busy on-sale would otherwise never stop).
  let quietUntil = 0;
  let announceTimer = null;
  function announce(text) {
    const live = $('map-live');
    live.textContent = '';
    setTimeout(() => { live.textContent = text; }, 50);
  }
  function announceChanges(own, others) {
    if (own.length) announce(own.join('. ') + '.');
    if (!others || announceTimer) return;
    const wait = Math.max(0, quietUntil - Date.now());
    announceTimer = setTimeout(() => {
      announceTimer = null;
      quietUntil = Date.now() + 5000;
      if (!state.show) return;
      const free = [...state.show.seats.values()].filter((x) => x.status === 'AVAILABLE').length;
      announce(`Seat map updated: ${free} seats available.`);
    }, Math.max(wait, 1500));
  }

  function toggle(id) {
    if (state.hold) { say('Pay for or release your held seats first.', 'error'); return; }
    const seat = state.show.seats.get(id);
    if (!seat || seat.status !== 'AVAILABLE') return;
    if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
    paintSeat(seat);
    renderSelection();
  }

  function renderSelection() {
    if (!state.show) return;
    const seats = [...state.selected].map((id) => state.show.seats.get(id)).filter(Boolean);
    const total = seats.reduce((t, s) => t + s.priceCents, 0);
    $('selection').textContent = seats.length ? `Selected: ${seats.map((s) => s.label).join(', ')} · ${money(total)}` : (state.hold ? '' : 'Select seats on the map.');
    $('hold').disabled = !seats.length || !!state.hold;
    for (const s of state.show.seats.values()) paintSeat(s);
  }

  // ---------- waiting room ----------
  // A show whose sale runs through a waiting room shows the line (position, people ahead,
  // estimated wait, live) instead of the map until the user is admitted; then the map, with the
  // session's countdown.
  const TICKET_FIELDS = 'showId state position ahead estimatedWaitSeconds admittedUntil';
  function duration(secs) {
    secs = Math.max(0, Math.round(secs));
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), sec = secs % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
  }
  function stopRoom() {
    if (state.queueSub) { state.queueSub(); state.queueSub = null; }
    clearInterval(state.sessionTimer);
    $('queue').hidden = true; $('session').hidden = true; $('map-area').hidden = false;
  }
  async function enterRoom(id) {
    // Only for the show on screen: the room of a show the user has left (or whose map has not
    // arrived yet — openShow enters it then) is not shown.
    if (id !== state.wanted || !state.show || state.show.id !== id) return;
    stopRoom();
    const sale = state.show.raw.onSale;
    if (!sale || !sale.queueEnabled) return;
    if (!state.me) { showTicket(null, 'Sales of this show go through a waiting room. Sign in to join the queue.'); return; }
    let t = null;
    try { t = (await gql(`query($s: ID!) { queueTicket(showId: $s) { ${TICKET_FIELDS} } }`, { s: id })).queueTicket; } catch (e) { say(e.message, 'error'); }
    if (id !== state.wanted) return;
    showTicket(t);
    if (t && t.state === 'WAITING') watchTicket(id);
  }
  function showTicket(t, note) {
    const admitted = t && t.state === 'ADMITTED';
    $('queue').hidden = admitted; $('map-area').hidden = !admitted; $('actions').hidden = !admitted;
    $('queue-join').hidden = !(state.me && (!t || t.state === 'EXPIRED'));
    clearInterval(state.sessionTimer);
    $('session').hidden = !admitted;
    if (admitted) {
      const end = new Date(t.admittedUntil);
      const tick = () => {
        const left = (end - Date.now()) / 1000;
        $('session-left').textContent = duration(left);
        if (left <= 0) { clearInterval(state.sessionTimer); enterRoom(state.wanted); }
      };
      tick();
      state.sessionTimer = setInterval(tick, 1000);
      return;
    }
    let text = note || 'Sales of this show go through a waiting room. Join the queue to get a place.';
    if (t && t.state === 'WAITING') {
      text = t.position == null
        ? `You are in the queue. Sales open in ${duration(t.estimatedWaitSeconds || 0)}; places are drawn at random among everyone who is here by then.`
        : `You are number ${t.position} in the queue (${t.ahead} ahead of you). Estimated wait: ${duration(t.estimatedWaitSeconds || 0)}.`;
    } else if (t && t.state === 'EXPIRED') {
      text = 'Your shopping session has ended. Join the queue again to shop again.';
    }
    $('queue-status').textContent = text;
  }
  function watchTicket(id) {
    if (state.queueSub) state.queueSub();
    let last = null, stopped = false, ended = false;
    // A stream the server ends (an error, a restart, a place that lapsed) before admission
    // reads the place again and watches anew: a waiting user is never left on a dead stream.
    const again = () => {
      if (ended) return;
      ended = true;
      setTimeout(() => {
        if (!stopped && state.wanted === id && !(last && last.state === 'ADMITTED')) enterRoom(id);
      }, 2000);
    };
    const dispose = wsClient().subscribe({ query: `subscription($s: ID!) { queueUpdates(showId: $s) { ${TICKET_FIELDS} } }`, variables: { s: id } }, {
      next: ({ data }) => {
        if (!data || stopped || state.wanted !== id) return;
        const t = data.queueUpdates;
        last = t;
        showTicket(t);
        if (t.state === 'ADMITTED') { say('It is your turn: choose your seats before your session ends.', 'ok'); reloadMap(id); }
      },
      error: again,
      complete: again,
    });
    state.queueSub = () => { stopped = true; dispose(); };
  }
  $('queue-join').onclick = async () => {
    const id = state.wanted;
    if (!id) return;
    try {
      const t = (await gql(`mutation($s: ID!) { joinQueue(showId: $s) { ${TICKET_FIELDS} } }`, { s: id })).joinQueue;
      if (id !== state.wanted) return;
      showTicket(t);
      if (t.state === 'WAITING') watchTicket(id);
    } catch (e) { say(e.message, 'error'); }
  };

  // ---------- hold, pay, release ----------
  $('hold').onclick = async () => {
    if (!state.me) { $('auth').hidden = false; $('email').focus(); say('Sign in to hold seats.', 'error'); return; }
    const seatIds = [...state.selected];
    try {
      const d = await gql(`mutation($show: ID!, $seats: [ID!]!) { holdSeats(showId: $show, seatIds: $seats) { id expiresAt totalCents seats { id label } } }`, { show: state.show.id, seats: seatIds });
      state.hold = { id: d.holdSeats.id, expiresAt: new Date(d.holdSeats.expiresAt), totalCents: d.holdSeats.totalCents, seats: d.holdSeats.seats };
      state.payKey = 'pay-' + (crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2));
      state.selected.clear();
      showHold();
      say(`Held ${d.holdSeats.seats.map((s) => s.label).join(', ')}. Pay before the timer runs out.`, 'ok');
    } catch (e) {
      if (e.code === 'NOT_ADMITTED') enterRoom(state.wanted);
      if (e.code === 'SEATS_UNAVAILABLE') {
        for (const id of e.ext.seatIds || []) state.selected.delete(id);
        await reloadMap();
      }
      say(e.message, 'error');
    }
  };

  // Best available: the server chooses and holds in one step (no stale map involved).
  $('best-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!state.show) return;
    if (!state.me) { $('auth').hidden = false; $('email').focus(); say('Sign in to hold seats.', 'error'); return; }
    if (state.hold) { say('Pay for or release your held seats first.', 'error'); return; }
    const count = Number($('best-count').value);
    const cat = $('best-category').value;
    const vars = {
      show: state.show.id, count, cats: cat ? [cat] : null,
      together: $('best-together').checked, wc: $('best-wheelchair').checked ? 1 : 0,
    };
    $('best').disabled = true;
    try {
      const d = await gql(`mutation($show: ID!, $count: Int!, $cats: [String!], $together: Boolean!, $wc: Int!) {
        holdBestAvailable(showId: $show, count: $count, categories: $cats, requireTogether: $together, wheelchairSpaces: $wc) {
          id expiresAt totalCents nextToEachOther seats { id label status heldByMe } } }`, vars);
      const h = d.holdBestAvailable;
      state.hold = { id: h.id, expiresAt: new Date(h.expiresAt), totalCents: h.totalCents, seats: h.seats };
      state.payKey = 'pay-' + (crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2));
      state.selected.clear();
      // Shown on the map at once (the live event confirms it).
      for (const x of h.seats) {
        const seat = state.show.seats.get(x.id);
        if (seat) { seat.status = 'HELD'; seat.heldByMe = true; paintSeat(seat); }
      }
      showHold();
      const where = h.nextToEachOther ? 'side by side' : 'in two adjacent rows (no seats side by side were free)';
      say(`Held the best available: ${h.seats.map((x) => x.label).join(', ')}, ${where}. Pay before the timer runs out.`, 'ok');
      if (h.seats[0]) rove(h.seats[0].id, false);
    } catch (e) {
      say(e.message, 'error');
      if (e.code === 'NOT_ADMITTED') enterRoom(state.wanted);
    } finally { $('best').disabled = false; }
  });

  function showHold() {
    $('hold-box').hidden = false;
    $('pay-total').textContent = money(state.hold.totalCents);
    renderSelection();
    clearInterval(state.timer);
    const tick = () => {
      const left = Math.max(0, Math.round((state.hold.expiresAt - Date.now()) / 1000));
      $('countdown').textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
      if (left <= 0) { clearHold(); say('Your hold expired and the seats went back on sale.', 'error'); reloadMap(); }
    };
    tick();
    state.timer = setInterval(tick, 1000);
  }

  function clearHold() {
    clearInterval(state.timer);
    state.hold = null; state.payKey = null;
    $('hold-box').hidden = true;
    renderSelection();
  }

  $('pay').onclick = async () => {
    if (!state.hold) return;
    $('pay').disabled = true;
    say('Paying…');
    try {
      const d = await gql(`mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { id status failureReason totalCents seats { label } } }`, { h: state.hold.id, k: state.payKey });
      const b = d.checkout;
      if (b.status === 'CONFIRMED') {
        clearHold(); say(`Booked! ${b.seats.map((s) => s.label).join(', ')} · ${money(b.totalCents)}. Enjoy the show.`, 'ok');
        // A checkout ends a waiting-room session.
        const sale = state.show.raw.onSale;
        if (sale && sale.queueEnabled) setTimeout(() => enterRoom(state.wanted), 4000);
      }
      else if (b.status === 'FAILED') { clearHold(); say(`Payment failed: ${b.failureReason}. Your seats were released.`, 'error'); }
      else say('Your payment is being confirmed. It will appear in your bookings shortly.', 'ok');
      loadBookings();
    } catch (e) {
      if (e.code === 'HOLD_EXPIRED') { clearHold(); reloadMap(); }
      if (e.code === 'NOT_ADMITTED') { clearHold(); enterRoom(state.wanted); }
      say(e.message, 'error');
    } finally { $('pay').disabled = false; }
  };

  $('release').onclick = async () => {
    if (!state.hold) return;
    try { await gql('mutation($h: ID!) { releaseHold(holdId: $h) }', { h: state.hold.id }); } catch (e) { say(e.message, 'error'); }
    clearHold();
    say('Seats released.', 'ok');
  };

  // ---------- bookings ----------
  async function loadBookings() {
    if (!state.me) { renderBookings([]); return; }
    try {
      const d = await gql('{ myBookings { id status totalCents failureReason createdAt show { id startsAt movie { title } } seats { label } } }');
      renderBookings(d.myBookings);
    } catch (e) { say(e.message, 'error'); }
  }
  function renderBookings(list) {
    const ul = $('bookings');
    ul.innerHTML = '';
    if (!list.length) { const li = document.createElement('li'); li.className = 'muted'; li.textContent = state.me ? 'No bookings yet.' : 'Sign in to see your bookings.'; ul.append(li); return; }
    for (const b of list) {
      const li = document.createElement('li');
      const text = document.createElement('span');
      text.textContent = `${b.show.movie.title} · ${fmt.format(new Date(b.show.startsAt))} · ${b.seats.map((s) => s.label).join(', ')} · ${money(b.totalCents)}`;
      const badge = document.createElement('span');
      badge.className = `badge ${b.status}`; badge.textContent = b.status.toLowerCase();
      if (b.failureReason) badge.title = b.failureReason;
      li.append(text, badge);
      if (b.status === 'CONFIRMED') {
        const c = document.createElement('button');
        c.className = 'secondary'; c.textContent = 'Cancel';
        c.setAttribute('aria-label', `Cancel booking of ${b.show.movie.title}`);
        c.onclick = async () => {
          try { await gql('mutation($id: ID!) { cancelBooking(bookingId: $id) { id status } }', { id: b.id }); say('Booking cancelled and refunded.', 'ok'); loadBookings(); }
          catch (e) { say(e.message, 'error'); }
        };
        li.append(c);
      }
      ul.append(li);
    }
  }

  function say(text, kind) {
    const m = $('message');
    m.textContent = text || '';
    m.className = 'message' + (kind ? ' ' + kind : '');
  }

  // ---------- start ----------
  loadMe();
  loadShows(false).then(() => { if (state.shows[0]) openShow(state.shows[0].id); }).catch((e) => say(e.message, 'error'));
})();
