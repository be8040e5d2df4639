// fxflow live page: plain JavaScript, no build step. Talks only to this API:
// /currencies, /rates, /stream/rates, /stream/alerts, /rates/{pair}/history
// (or /candles when the API has it), /alerts, /alerts/history, /stats.
//
// Stream updates are queued and applied once per animation frame, so a fast
// replay (28 pairs, hundreds of batches a second) costs one DOM pass a frame.
// Prices arrive as exact decimal strings and are rounded for display by string
// arithmetic; floats are used only to draw the chart and for the matrix's
// inverse cells and percentages, which are for reading only.
'use strict';

(function () {
  const KEY_STORAGE = 'fxflow.apiKey';
  const FEED_MAX = 50;
  const HISTORY_PAGE = 5000;
  const HISTORY_MAX_ROWS = 50000;
  const STATS_EVERY_MS = 2000;
  const CHART_EVERY_MS = 100;
  const FLASH_EVERY_MS = 300;
  const DAY = 86400;

  const $ = (selector, root) => (root || document).querySelector(selector);

  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v == null) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else node.setAttribute(k, v);
      }
    }
    if (children) for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // What the browser test reads (counts only, nothing secret).
  const probe = (window.fxflowLive = {
    rateEvents: 0,
    alertEvents: 0,
    frames: 0,
    maxBatch: 0,
    boardFilledMs: null,
    chartPoints: 0,
  });

  // ---------------------------------------------------------------- decimals

  /** Round a decimal string (`-12.3456`) to `places` decimals, half away from zero, exactly. */
  function roundDecimal(text, places) {
    let s = String(text).trim();
    let negative = false;
    if (s.startsWith('-')) { negative = true; s = s.slice(1); } else if (s.startsWith('+')) s = s.slice(1);
    if (!/^[0-9]*(\.[0-9]*)?$/.test(s) || s === '' || s === '.') return String(text);
    let [int, frac = ''] = s.split('.');
    if (int === '') int = '0';
    let digits;
    if (frac.length <= places) {
      digits = int + frac.padEnd(places, '0');
    } else {
      digits = int + frac.slice(0, places);
      if (frac.charCodeAt(places) >= 53 /* '5' */) {
        const a = digits.split('');
        let i = a.length - 1;
        for (; i >= 0; i--) {
          if (a[i] === '9') a[i] = '0';
          else { a[i] = String.fromCharCode(a[i].charCodeAt(0) + 1); break; }
        }
        if (i < 0) a.unshift('1');
        digits = a.join('');
      }
    }
    let intPart = digits.slice(0, digits.length - places).replace(/^0+(?=\d)/, '');
    if (intPart === '') intPart = '0';
    const fracPart = digits.slice(digits.length - places);
    const out = places > 0 ? intPart + '.' + fracPart : intPart;
    const zero = /^[0.]*$/.test(out);
    return negative && !zero ? '-' + out : out;
  }

  /** The sign of a decimal string: -1, 0 or 1. */
  function signOf(text) {
    if (text == null) return 0;
    const s = String(text).trim();
    if (/^[-+]?[0.]*$/.test(s)) return 0;
    return s.startsWith('-') ? -1 : 1;
  }

  function signed(text, places) {
    const r = roundDecimal(text, places);
    if (/^[0.]+$/.test(r)) return r; // rounds to zero: no sign (the arrow still tells the direction)
    return r.startsWith('-') ? r : '+' + r;
  }

  /** A float for reading only (the matrix's inverses), with `sig` significant digits. */
  function formatSig(x, sig) {
    if (!isFinite(x) || x === 0) return '—';
    const magnitude = Math.floor(Math.log10(Math.abs(x)));
    const places = Math.min(12, Math.max(0, sig - 1 - magnitude));
    return x.toFixed(places);
  }

  function decimalsOf(pair) {
    const r = state.rates.get(pair);
    if (r && Number.isInteger(r.decimals)) return r.decimals;
    return pair.includes('JPY') ? 3 : 5;
  }

  /** `2024-02-26T00:00:00Z` → `2024-02-26`; other times keep hh:mm:ss. */
  function formatTs(ts) {
    if (!ts) return '—';
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(ts);
    if (!m) return ts;
    if (m[2] === '00:00:00' && !m[3] && m[4] === 'Z') return m[1];
    return m[1] + ' ' + m[2] + (m[4] === 'Z' ? '' : ' ' + m[4]);
  }

  function isoUtc(seconds) {
    if (seconds == null || !isFinite(seconds)) return '—';
    return formatTs(new Date(seconds * 1000).toISOString().replace('.000Z', 'Z'));
  }

  function pathPair(pair) {
    return encodeURIComponent(pair.replace('/', ''));
  }

  // -------------------------------------------------------------- HTTP

  let keyAsked = null;

  /** One key prompt for however many requests are waiting for it. */
  function askKeyOnce() {
    if (!keyAsked) keyAsked = askKey().finally(() => { keyAsked = null; });
    return keyAsked;
  }

  /**
   * GET a JSON body, with the tab's key when it has one (the alert routes
   * answer a tenant's own rules). An API that wants a key for everything
   * (`private`) answers 401: the key is asked for once, and the rate stream
   * is opened again with it.
   */
  async function getJSON(path, signal, key) {
    const headers = { Accept: 'application/json' };
    const sent = key || storedKey();
    if (sent) headers.Authorization = `Bearer ${sent}`;
    let res = await fetch(path, { headers, signal });
    if (res.status === 401) {
      const first = !state.privateApi;
      state.privateApi = true;
      const given = storedKey() || await askKeyOnce();
      if (given) {
        headers.Authorization = `Bearer ${given}`;
        res = await fetch(path, { headers, signal });
        if (first && res.ok) startStreams();
      }
    }
    if (!res.ok) {
      const err = new Error(`${path}: HTTP ${res.status}`);
      err.status = res.status;
      try { err.body = await res.json(); } catch (_) { /* not JSON */ }
      throw err;
    }
    return res.json();
  }

  // -------------------------------------------------------------- state

  const state = {
    ready: false,
    privateApi: false, // the API answered 401 to a data route: every request needs the key
    currencies: [],
    order: new Map(), // code -> priority
    pairs: [], // market-convention pairs, in market order
    rates: new Map(), // pair -> RateView (+ tsMs)
    rows: new Map(), // pair -> board row
    cells: new Map(), // "A/B" -> matrix cell
    pending: new Map(), // pair -> newest RateView not yet shown
    pendingFirings: [],
    frameQueued: false,
    lastTick: null,
    stages: [], // [{name, kind}] from GET /
  };

  function schedule() {
    if (!state.frameQueued) {
      state.frameQueued = true;
      requestAnimationFrame(frame);
    }
  }

  function frame() {
    state.frameQueued = false;
    probe.frames++;
    if (state.ready && state.pending.size) {
      const batch = state.pending;
      state.pending = new Map();
      probe.maxBatch = Math.max(probe.maxBatch, batch.size);
      for (const rate of batch.values()) applyRate(rate, true);
      afterRates();
    }
    // The chart redraws at most every CHART_EVERY_MS: a canvas of thousands of
    // points each frame would cost more than the board.
    if (chart.queue.length && chart.plot) {
      const now = performance.now();
      if (now - chart.drawnAt >= CHART_EVERY_MS) { chart.drawnAt = now; chart.flush(); } else schedule();
    }
    if (state.pendingFirings.length) renderFirings();
  }

  // -------------------------------------------------------------- board

  function pairKey(pair) {
    const [b, q] = pair.split('/');
    const ob = state.order.has(b) ? state.order.get(b) : 99;
    const oq = state.order.has(q) ? state.order.get(q) : 99;
    return ob * 100 + oq;
  }

  function makeRow(rate) {
    const pair = rate.pair;
    const kind = rate.kind === 'quote' ? 'quote' : 'cross';
    const button = el('button', { type: 'button', class: 'pair-btn', 'aria-pressed': 'false', 'aria-label': `${pair}: show its chart`, dataset: { pair } }, [pair]);
    const cell = (field, cls) => el('td', { class: cls, dataset: { field } });
    const row = {
      pair,
      kind,
      tr: el('tr', { class: 'kind-' + kind, dataset: { pair, kind } }),
      button,
      bid: cell('bid', 'num col-ba'),
      ask: cell('ask', 'num col-ba'),
      mid: cell('mid', 'num mid'),
      change: cell('change', 'num change'),
      pct: cell('pct', 'num col-pct'),
      time: cell('time', 'time col-time'),
      timeEl: el('time'),
      alt: false,
      key: pairKey(pair),
    };
    row.time.append(row.timeEl);
    row.tr.append(
      el('th', { scope: 'row' }, [button]),
      el('td', { class: 'col-kind' }, [el('span', { class: 'badge kind-' + kind, text: kind })]),
      row.bid, row.ask, row.mid, row.change, row.pct, row.time,
    );
    const body = document.getElementById('board-' + kind);
    // Stable rows in market order: insert once, never move.
    let before = null;
    for (const other of state.rows.values()) {
      if (other.kind === kind && other.key > row.key && (!before || other.key < before.key)) before = other;
    }
    body.insertBefore(row.tr, before ? before.tr : null);
    state.rows.set(pair, row);
    return row;
  }

  /** Set a node's text if it changed (compared with what we last wrote, not read back from the DOM). */
  function setText(node, text) {
    if (node.fxText !== text) {
      node.fxText = text;
      node.textContent = text;
    }
  }

  function applyRate(rate, live) {
    const tsMs = Date.parse(rate.ts);
    const previous = state.rates.get(rate.pair);
    if (previous && tsMs < previous.tsMs) return; // an older price than shown
    rate.tsMs = tsMs;
    state.rates.set(rate.pair, rate);
    if (!state.lastTick || tsMs > state.lastTick.tsMs) state.lastTick = rate;

    const row = state.rows.get(rate.pair) || makeRow(rate);
    const d = Number.isInteger(rate.decimals) ? rate.decimals : decimalsOf(rate.pair);
    setText(row.bid, roundDecimal(rate.bid, d));
    setText(row.ask, roundDecimal(rate.ask, d));
    setText(row.mid, roundDecimal(rate.mid, d));
    const sign = signOf(rate.change);
    setText(row.change, rate.change == null ? '—' : signed(rate.change, d));
    row.change.classList.toggle('up', sign > 0);
    row.change.classList.toggle('down', sign < 0);
    let pct = '—';
    if (rate.change != null) {
      const mid = parseFloat(rate.mid);
      const prev = mid - parseFloat(rate.change);
      if (prev) pct = ((parseFloat(rate.change) / prev) * 100).toFixed(2);
      if (pct === '-0.00') pct = '0.00';
      if (!pct.startsWith('-') && pct !== '—') pct = '+' + pct;
    }
    setText(row.pct, pct);
    row.pct.classList.toggle('up', sign > 0);
    row.pct.classList.toggle('down', sign < 0);
    if (row.timeEl.dateTime !== rate.ts) {
      row.timeEl.dateTime = rate.ts;
      row.timeEl.textContent = formatTs(rate.ts);
    }
    // Flash on a tick, in the tick's direction. At replay speed a flash of the
    // same direction restarts at most every FLASH_EVERY_MS (restyling every
    // cell every frame would cost the frame); a change of direction always shows.
    const now = live && previous ? performance.now() : 0;
    const dir = sign > 0 ? 'up' : sign < 0 ? 'down' : 'flat';
    if (now && (dir !== row.flashDir || now - (row.flashAt || 0) >= FLASH_EVERY_MS)) {
      row.flashAt = now;
      row.flashDir = dir;
      const was = row.flash;
      row.alt = !row.alt;
      row.flash = `flash-${dir}-${row.alt ? 'a' : 'b'}`;
      for (const c of [row.mid, row.change]) {
        if (was) c.classList.remove(was);
        c.classList.add(row.flash);
      }
    }
    updateMatrix(rate, d);
  }

  function afterRates() {
    const last = state.lastTick;
    if (last) {
      const t = $('#last-tick');
      if (t.dateTime !== last.ts) {
        t.dateTime = last.ts;
        t.textContent = formatTs(last.ts);
      }
    }
    const expected = state.pairs.length;
    const filled = state.rows.size;
    if (probe.boardFilledMs == null && expected && filled >= expected) {
      probe.boardFilledMs = performance.now();
      try { performance.mark('fxflow:board-filled'); } catch (_) { /* old browsers */ }
      document.body.dataset.board = 'filled';
    }
    const status = $('#board-status');
    const text = filled
      ? `${filled} pairs: ${countKind('quote')} quotes, ${countKind('cross')} crosses.`
      : 'No rates yet: the pipeline has not priced anything.';
    setText(status, text);
    updateFormNow();
  }

  function countKind(kind) {
    let n = 0;
    for (const r of state.rows.values()) if (r.kind === kind) n++;
    return n;
  }

  function selectBoardPair(pair) {
    for (const row of state.rows.values()) row.button.setAttribute('aria-pressed', String(row.pair === pair));
  }

  // -------------------------------------------------------------- matrix

  function buildMatrix() {
    const table = $('#matrix');
    table.textContent = '';
    const codes = state.currencies.map((c) => c.code);
    const names = new Map(state.currencies.map((c) => [c.code, c.name]));
    const head = el('tr', null, [el('td')]);
    for (const q of codes) head.append(el('th', { scope: 'col' }, [el('abbr', { title: names.get(q), text: q })]));
    table.append(el('thead', null, [head]));
    const body = el('tbody');
    for (const b of codes) {
      const tr = el('tr', null, [el('th', { scope: 'row' }, [el('abbr', { title: names.get(b), text: b })])]);
      for (const q of codes) {
        if (b === q) {
          tr.append(el('td', { class: 'diag', dataset: { base: b, quote: q } }));
          continue;
        }
        const conv = state.order.get(b) < state.order.get(q);
        const market = conv ? `${b}/${q}` : `${q}/${b}`;
        const td = el('td', {
          class: conv ? 'conv' : 'inv',
          title: conv ? `${b}/${q} mid` : `${b}/${q} = 1 ÷ ${market} mid (computed for reading)`,
          dataset: { base: b, quote: q, pair: market },
          text: '—',
        });
        state.cells.set(`${b}/${q}`, td);
        tr.append(td);
      }
      body.append(tr);
    }
    table.append(body);
  }

  function updateMatrix(rate, d) {
    const [b, q] = rate.pair.split('/');
    const direct = state.cells.get(`${b}/${q}`);
    if (direct) setText(direct, roundDecimal(rate.mid, d));
    const mirror = state.cells.get(`${q}/${b}`);
    if (mirror) setText(mirror, formatSig(1 / parseFloat(rate.mid), 5));
  }

  // -------------------------------------------------------------- streams

  function setConn(stateName, text) {
    const c = $('#conn');
    c.dataset.state = stateName;
    setText(c, text);
  }

  function openStream(path, event, onItem, onState) {
    let source = null;
    let retry = null;
    let stopped = false;
    const connect = () => {
      retry = null;
      if (stopped) return;
      source = new EventSource(path);
      source.addEventListener(event, (ev) => {
        let item;
        try { item = JSON.parse(ev.data); } catch (_) { return; }
        onItem(item);
      });
      source.onopen = () => onState && onState('live');
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) {
          // The browser gave up (e.g. 503 too many streams): try again later ourselves.
          source.close();
          onState && onState('closed');
          if (!retry) retry = setTimeout(() => { onState && onState('reconnect'); connect(); }, 5000);
        } else {
          onState && onState('reconnecting');
        }
      };
    };
    connect();
    return {
      stop: () => {
        stopped = true;
        if (retry) clearTimeout(retry);
        if (source) source.close();
      },
    };
  }

  let rateStream = null;

  /** The rate stream: EventSource, or (on an API that wants a key for everything) fetch with the key. */
  function startStreams() {
    if (rateStream) rateStream.stop();
    const onRate = (rate) => {
      probe.rateEvents++;
      state.pending.set(rate.pair, rate); // the board shows the newest per frame
      if (rate.pair === chart.pair) chart.queue.push(rate); // the chart gets every tick
      schedule();
    };
    if (state.privateApi && storedKey()) {
      rateStream = openKeyedStream('/stream/rates', 'rate', onRate);
      setConn('live', 'Live');
      return;
    }
    rateStream = openStream('/stream/rates', 'rate', onRate, (s) => {
      if (s === 'live') setConn('live', 'Live');
      else if (s === 'reconnecting') setConn('reconnecting', 'Reconnecting…');
      else if (s === 'closed') setConn('closed', 'Disconnected; retrying in 5 s');
      else if (s === 'reconnect') loadSnapshot().catch(() => {});
    });
  }

  /**
   * Server-Sent Events read with fetch, which (unlike EventSource) can send
   * the API key; reconnects with Last-Event-ID until `stop()`.
   */
  function openKeyedStream(path, event, onItem) {
    const ctrl = new AbortController();
    let lastId = null;
    const dispatch = (block) => {
      let name = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
        else if (line.startsWith('id:')) lastId = line.slice(3).trim();
      }
      if (name !== event || !data) return;
      let item;
      try { item = JSON.parse(data); } catch (_) { return; }
      onItem(item);
    };
    const run = async () => {
      while (!ctrl.signal.aborted) {
        const key = storedKey();
        if (!key) return;
        try {
          const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${key}` };
          if (lastId) headers['Last-Event-ID'] = lastId;
          const res = await fetch(path, { headers, signal: ctrl.signal });
          if (res.status === 401 || res.status === 403) { forgetKey(); return; }
          if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value.replace(/\r\n?/g, '\n');
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              dispatch(buffer.slice(0, end));
              buffer = buffer.slice(end + 2);
            }
          }
        } catch (_) {
          if (ctrl.signal.aborted) return;
        }
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
    };
    run();
    return { stop: () => ctrl.abort() };
  }

  // The alert panels show the rules and firings of the key's tenant: they run
  // while the tab holds a key.
  let alertStream = null;

  function startAlertPanels() {
    if (alertStream || !storedKey()) return;
    alertStream = openKeyedStream('/stream/alerts', 'alert', (firing) => {
      probe.alertEvents++;
      state.pendingFirings.push(firing);
      if (state.pendingFirings.length > FEED_MAX) state.pendingFirings.splice(0, state.pendingFirings.length - FEED_MAX);
      schedule();
    });
    loadRules().catch((e) => showError(`Could not list the rules: ${errorText(e)}`));
    loadFirings().catch((e) => setText($('#firings-status'), `Could not load the history: ${errorText(e)}`));
  }

  function stopAlertPanels() {
    if (alertStream) { alertStream.stop(); alertStream = null; }
    for (const id of [...ruleRows.keys()]) removeRule(id);
    syncRulesEmpty();
    $('#firings-body').replaceChildren();
    $('#feed').replaceChildren();
    $('#feed-empty').hidden = false;
    $('#firings-more').hidden = true;
    setText($('#firings-status'), 'Give your API key (create an alert) to see your firings.');
  }

  async function loadSnapshot() {
    const body = await getJSON('/rates');
    for (const rate of body.rates || []) {
      const shown = state.rates.get(rate.pair);
      if (!shown || Date.parse(rate.ts) >= shown.tsMs) applyRate(rate, false);
    }
    afterRates();
  }

  // -------------------------------------------------------------- chart

  const chart = {
    pair: null,
    mode: 'line', // or 'candles'
    interval: DAY, // candle width, seconds
    x: [],
    mid: [],
    o: [], h: [], l: [], c: [],
    queue: [],
    plot: null,
    range: 'all', // days (number), 'all', or 'custom' (the user zoomed)
    abort: null,
    drawnAt: 0,
    hasCandles: null, // Promise<boolean>
    markers: [], // [{t, v}]: a backtest's firings, drawn over the prices

    data() {
      return this.mode === 'candles' ? [this.x, this.o, this.h, this.l, this.c] : [this.x, this.mid];
    },

    append(rate) {
      const t = Date.parse(rate.ts) / 1000;
      const v = parseFloat(rate.mid);
      if (!isFinite(t) || !isFinite(v)) return;
      const n = this.x.length;
      if (this.mode === 'candles') {
        // Buckets aligned on the server's: the last candle's start plus whole intervals.
        const lastStart = n ? this.x[n - 1] : Math.floor(t / this.interval) * this.interval;
        if (n && t >= lastStart && t < lastStart + this.interval) {
          this.h[n - 1] = Math.max(this.h[n - 1], v);
          this.l[n - 1] = Math.min(this.l[n - 1], v);
          this.c[n - 1] = v;
        } else if (!n || t >= lastStart + this.interval) {
          const start = n ? lastStart + Math.floor((t - lastStart) / this.interval) * this.interval : lastStart;
          this.x.push(start); this.o.push(v); this.h.push(v); this.l.push(v); this.c.push(v);
        }
        return;
      }
      if (n && t === this.x[n - 1]) this.mid[n - 1] = v; // the same instant again: replace
      else if (!n || t > this.x[n - 1]) { this.x.push(t); this.mid.push(v); }
    },

    flush() {
      if (!this.plot) return; // still loading: the queue is merged when it arrives
      for (const r of this.queue) this.append(r);
      this.queue.length = 0;
      this.redraw();
    },

    redraw() {
      const u = this.plot;
      if (!u) return;
      probe.chartPoints = this.x.length;
      $('#chart').dataset.points = String(this.x.length);
      if (this.range === 'all') u.setData(this.data(), true);
      else {
        u.setData(this.data(), false);
        if (typeof this.range === 'number') this.applyRange();
      }
    },

    applyRange() {
      const u = this.plot;
      const n = this.x.length;
      if (!u || !n) return;
      if (this.range === 'all') {
        u.setScale('x', { min: this.x[0], max: this.x[n - 1] });
        return;
      }
      const max = this.x[n - 1];
      const min = Math.max(this.x[0], max - this.range * DAY);
      u.setScale('x', { min, max: min === max ? max + DAY : max });
    },
  };

  function setRange(range) {
    chart.range = range;
    for (const b of document.querySelectorAll('.ranges button')) {
      const r = b.dataset.range === 'all' ? 'all' : Number(b.dataset.range);
      b.setAttribute('aria-pressed', String(r === range));
    }
    chart.applyRange();
  }

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function candlesDraw(u) {
    if (chart.mode !== 'candles') return;
    const [xs, o, h, l, c] = u.data;
    if (!xs.length) return;
    const { min, max } = u.scales.x;
    const up = cssVar('--up', '#0a7d3b');
    const down = cssVar('--down', '#c0262d');
    const ctx = u.ctx;
    let i0 = 0;
    while (i0 < xs.length && xs[i0] < min) i0++;
    let i1 = xs.length - 1;
    while (i1 > 0 && xs[i1] > max) i1--;
    const count = Math.max(1, i1 - i0 + 1);
    const slot = u.bbox.width / Math.max(count, (max - min) / chart.interval || 1);
    const body = Math.max(1, Math.min(slot * 0.7, 24 * devicePixelRatio));
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    for (let i = i0; i <= i1; i++) {
      const x = Math.round(u.valToPos(xs[i] + chart.interval / 2, 'x', true));
      const yo = u.valToPos(o[i], 'y', true);
      const yc = u.valToPos(c[i], 'y', true);
      const yh = u.valToPos(h[i], 'y', true);
      const yl = u.valToPos(l[i], 'y', true);
      const color = c[i] >= o[i] ? up : down;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.lineWidth = Math.max(1, devicePixelRatio);
      ctx.beginPath();
      ctx.moveTo(x, yh);
      ctx.lineTo(x, yl);
      ctx.stroke();
      const top = Math.min(yo, yc);
      ctx.fillRect(x - body / 2, top, body, Math.max(1, Math.abs(yc - yo)));
    }
    ctx.restore();
  }

  /** A backtest's firings: a ring at each (time, price) over the chart. */
  function markersDraw(u) {
    if (!chart.markers.length) return;
    const { min, max } = u.scales.x;
    const ctx = u.ctx;
    const r = 4 * devicePixelRatio;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    ctx.strokeStyle = cssVar('--warn', '#b35c00');
    ctx.lineWidth = 2 * devicePixelRatio;
    for (const m of chart.markers) {
      if (m.t < min || m.t > max) continue;
      const x = u.valToPos(m.t, 'x', true);
      const y = u.valToPos(m.v, 'y', true);
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.restore();
  }

  function buildPlot() {
    const box = $('#chart');
    if (chart.plot) { chart.plot.destroy(); chart.plot = null; }
    box.textContent = '';
    if (typeof window.uPlot !== 'function') {
      box.dataset.state = 'error';
      setText($('#chart-info'), 'The chart library did not load.');
      return;
    }
    const width = Math.max(240, box.clientWidth || 600);
    const height = width < 480 ? 240 : 320;
    const fg = cssVar('--muted', '#5b6470');
    const grid = cssVar('--grid', 'rgba(0,0,0,0.08)');
    const accent = cssVar('--accent', '#1f6feb');
    const d = decimalsOf(chart.pair);
    const fmt = (u, v) => (v == null ? '—' : v.toFixed(d));
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const hidden = { paths: () => null, points: { show: false }, value: fmt };
    const series = chart.mode === 'candles'
      ? [
        { label: 'UTC', value: (u, v) => isoUtc(v) },
        Object.assign({ label: 'open', stroke: fg }, hidden),
        Object.assign({ label: 'high', stroke: fg }, hidden),
        Object.assign({ label: 'low', stroke: fg }, hidden),
        Object.assign({ label: 'close', stroke: accent }, hidden),
      ]
      : [
        { label: 'UTC', value: (u, v) => isoUtc(v) },
        { label: `${chart.pair} mid`, stroke: accent, width: 1.5, value: fmt, points: { show: false } },
      ];
    const opts = {
      width,
      height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      cursor: { drag: { x: true, y: false, setScale: true } },
      scales: { x: { time: true } },
      axes: [
        Object.assign({}, axis),
        Object.assign({}, axis, {
          size: 64,
          values: (u, splits, axisIdx, space, incr) => {
            // As many decimals as the tick step has (0.025 → 3).
            const step = Number(incr || 1).toFixed(10).replace(/0+$/, '');
            const places = Math.min(10, step.length - step.indexOf('.') - 1);
            return splits.map((v) => v.toFixed(places));
          },
        }),
      ],
      series,
      hooks: {
        // A drag across the plot (uPlot then zooms to it): the user chose a window.
        setSelect: [(u) => {
          if (u.select.width > 0 && chart.range !== 'custom') {
            chart.range = 'custom';
            for (const b of document.querySelectorAll('.ranges button')) b.setAttribute('aria-pressed', 'false');
          }
        }],
        draw: [candlesDraw, markersDraw],
      },
    };
    chart.plot = new uPlot(opts, chart.data(), box);
    // Double-click zooms out to everything (uPlot's default) and follows again.
    chart.plot.over.addEventListener('dblclick', () => setRange('all'));
    box.dataset.state = 'ready';
    box.dataset.pair = chart.pair;
    box.dataset.mode = chart.mode;
    box.setAttribute('aria-label', `${chart.pair} ${chart.mode === 'candles' ? 'candles' : 'mid price'} chart`);
    probe.chartPoints = chart.x.length;
    box.dataset.points = String(chart.x.length);
    if (chart.range !== 'all' && chart.range !== 'custom') chart.applyRange();
    if (chart.range === 'custom') setRange('all');
  }

  function apiHasCandles() {
    if (!chart.hasCandles) {
      chart.hasCandles = getJSON('/openapi.json')
        .then((doc) => Object.keys((doc && doc.paths) || {}).some((p) => /^\/rates\/\{[^}]+\}\/candles$/.test(p)))
        .catch(() => false);
    }
    return chart.hasCandles;
  }

  function durationSeconds(text) {
    const m = /^(\d+)(s|m|h|d|w)$/.exec(String(text || '').trim());
    if (!m) return DAY;
    return Number(m[1]) * { s: 1, m: 60, h: 3600, d: DAY, w: 7 * DAY }[m[2]];
  }

  const num = (v) => (v && typeof v === 'object' ? parseFloat(v.mid) : parseFloat(v));

  /** Candles from `/rates/{pair}/candles?interval=1d`, read tolerantly; null if the shape is unknown. */
  async function loadCandles(pair, signal) {
    let path = `/rates/${pathPair(pair)}/candles?interval=1d`;
    const out = { mode: 'candles', interval: DAY, x: [], o: [], h: [], l: [], c: [] };
    for (let page = 0; path && page < 50; page++) {
      const body = await getJSON(path, signal);
      if (body.interval) { out.interval = durationSeconds(body.interval); out.intervalText = String(body.interval); }
      const rows = body.candles || body.rates || body.data;
      if (!Array.isArray(rows)) return null;
      for (const r of rows) {
        const t = r.start || r.ts || r.time || r.open_time || r.bucket || r.from;
        const x = Date.parse(t) / 1000;
        const vals = [num(r.open), num(r.high), num(r.low), num(r.close)];
        if (!isFinite(x) || vals.some((v) => !isFinite(v))) return null;
        out.x.push(x); out.o.push(vals[0]); out.h.push(vals[1]); out.l.push(vals[2]); out.c.push(vals[3]);
      }
      path = typeof body.next === 'string' ? body.next : null;
    }
    return out;
  }

  async function loadHistory(pair, signal) {
    let path = `/rates/${pathPair(pair)}/history?limit=${HISTORY_PAGE}`;
    const out = { mode: 'line', x: [], mid: [] };
    while (path && out.x.length < HISTORY_MAX_ROWS) {
      const body = await getJSON(path, signal);
      for (const r of body.rates || []) {
        const x = Date.parse(r.ts) / 1000;
        const v = parseFloat(r.mid);
        if (!isFinite(x) || !isFinite(v)) continue;
        const n = out.x.length;
        if (n && x === out.x[n - 1]) out.mid[n - 1] = v; // two sources at one instant: keep the later row
        else if (!n || x > out.x[n - 1]) { out.x.push(x); out.mid.push(v); }
      }
      path = typeof body.next === 'string' ? body.next : null;
    }
    return out;
  }

  async function showChart(pair) {
    if (!pair) return;
    if (chart.abort) chart.abort.abort();
    const ctrl = new AbortController();
    chart.abort = ctrl;
    chart.pair = pair;
    chart.queue = [];
    selectBoardPair(pair);
    const select = $('#chart-pair');
    if (select.value !== pair) select.value = pair;
    const box = $('#chart');
    box.dataset.state = 'loading';
    setText($('#chart-info'), `Loading ${pair}…`);
    try {
      let data = null;
      if (await apiHasCandles()) {
        try { data = await loadCandles(pair, ctrl.signal); } catch (e) { if (e.name === 'AbortError') throw e; data = null; }
      }
      if (!data) data = await loadHistory(pair, ctrl.signal);
      if (chart.abort !== ctrl) return;
      chart.mode = data.mode;
      chart.interval = data.interval || DAY;
      chart.markers = [];
      chart.x = data.x;
      chart.mid = data.mid || [];
      chart.o = data.o || []; chart.h = data.h || []; chart.l = data.l || []; chart.c = data.c || [];
      // Ticks that arrived while loading: appended if newer than the history.
      for (const r of chart.queue) chart.append(r);
      chart.queue.length = 0;
      buildPlot();
      const n = chart.x.length;
      setText($('#chart-info'), n
        ? `${pair}: ${n} ${chart.mode === 'candles' ? `candles (${data.intervalText || '1d'})` : 'prices'} from ${isoUtc(chart.x[0])}, live ticks appended.`
        : `${pair}: no history yet; live ticks will draw it.`);
    } catch (e) {
      if (e.name === 'AbortError' || chart.abort !== ctrl) return;
      box.dataset.state = 'error';
      setText($('#chart-info'), `Could not load ${pair}: ${errorText(e)}`);
    }
  }

  function errorText(e) {
    if (e && e.body && e.body.error) return e.body.error.message;
    return (e && e.message) || String(e);
  }

  function watchChartSize() {
    const box = $('#chart');
    let last = box.clientWidth;
    let queued = false;
    const ro = new ResizeObserver(() => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        const w = box.clientWidth;
        if (!chart.plot || Math.abs(w - last) < 2) return;
        last = w;
        chart.plot.setSize({ width: Math.max(240, w), height: w < 480 ? 240 : 320 });
      });
    });
    ro.observe(box);
    const scheme = window.matchMedia('(prefers-color-scheme: dark)');
    scheme.addEventListener('change', () => { if (chart.plot) buildPlot(); });
  }

  // -------------------------------------------------------------- API key

  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE); } catch (_) { return null; }
  }

  function showKeyState() {
    const has = !!storedKey();
    setText($('#key-state'), has ? 'An API key is kept for this tab.' : 'Changes need an API key; you will be asked for it once.');
    $('#forget-key').hidden = !has;
  }

  function forgetKey() {
    try { sessionStorage.removeItem(KEY_STORAGE); } catch (_) { /* storage off */ }
    showKeyState();
    stopAlertPanels();
  }

  let keyWaiter = null;

  function askKey() {
    const dialog = $('#key-dialog');
    const input = $('#key-input');
    input.value = '';
    return new Promise((resolve) => {
      keyWaiter = resolve;
      dialog.returnValue = '';
      dialog.showModal();
      input.focus();
    });
  }

  function setupKeyDialog() {
    const dialog = $('#key-dialog');
    dialog.addEventListener('close', () => {
      const input = $('#key-input');
      const key = dialog.returnValue === 'ok' ? input.value.trim() : '';
      input.value = '';
      if (key) {
        try { sessionStorage.setItem(KEY_STORAGE, key); } catch (_) { /* storage off: used once */ }
      }
      showKeyState();
      const done = keyWaiter;
      keyWaiter = null;
      if (done) done(key || null);
    });
    $('#forget-key').addEventListener('click', () => {
      forgetKey();
      setText($('#alert-ok'), 'The key is forgotten.');
      $('#f-create').focus();
    });
  }

  /** A request with the key (asked for once per tab); null when the user cancelled. */
  async function withKey(method, path, body) {
    let key = storedKey();
    if (!key) key = await askKey();
    if (!key) return null;
    const headers = { Authorization: `Bearer ${key}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 401 || res.status === 403) forgetKey(); // asked again next time
    else startAlertPanels(); // a key the API took: show its tenant's rules and firings
    return res;
  }

  // -------------------------------------------------------------- alerts

  const FIELD_INPUTS = {
    pair: 'f-pair',
    'condition.type': 'f-condition',
    'condition.threshold': 'f-threshold',
    'condition.percent': 'f-percent',
    'condition.window': 'f-window',
    'condition.low': 'f-low',
    'condition.high': 'f-high',
    'condition.amount': 'f-amount',
    'condition.over': 'f-over',
    'condition.over.bars': 'f-over',
    'condition.over.window': 'f-over',
    'trigger.interval': 'f-interval',
    'condition.max_age': 'f-max-age',
    'condition.calendar': 'f-calendar',
    'condition.bps': 'f-bps',
    'condition.sources': 'f-sources',
    condition: 'f-condition',
    'trigger.type': 'f-trigger',
    'trigger.cooldown': 'f-cooldown',
    'trigger.rearm': 'f-rearm',
    price: 'f-price',
    'email.to': 'f-email',
    'webhook.url': 'f-webhook',
    'webhook.format': 'f-notify',
  };

  function clearFormErrors() {
    const box = $('#alert-error');
    box.textContent = '';
    for (const input of document.querySelectorAll('#alert-form [aria-invalid]')) input.removeAttribute('aria-invalid');
  }

  function showError(message, details, status) {
    const box = $('#alert-error');
    box.textContent = '';
    const p = el('p');
    if (status) p.append(el('strong', { text: status + ' ' }));
    p.append(message);
    box.append(p);
    if (details && details.length) {
      const ul = el('ul');
      for (const d of details) {
        ul.append(el('li', { dataset: { field: d.field } }, [el('code', { text: d.field }), ': ' + d.message]));
        const id = FIELD_INPUTS[d.field] || FIELD_INPUTS[String(d.field).replace(/\[\d+\]$/, '')];
        if (id) document.getElementById(id).setAttribute('aria-invalid', 'true');
      }
      box.append(ul);
    }
  }

  async function showApiError(res, what) {
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    const error = body && body.error;
    let message = error ? error.message : `${what} failed (HTTP ${res.status})`;
    if (!/[.!?]$/.test(message)) message += '.';
    if (res.status === 401 || res.status === 403) message += ' The key was not kept: you will be asked again.';
    const retry = res.headers.get('Retry-After');
    if (res.status === 429 && retry) message += ` Retry in ${retry} s.`;
    showError(message, error ? error.details : [], `${res.status}${error ? ' ' + error.code : ''}:`);
  }

  function readForm() {
    const v = (id) => document.getElementById(id).value.trim();
    const type = v('f-condition');
    const condition = { type };
    const group = conditionGroup(type);
    if (group === 'pct') {
      if (v('f-percent')) condition.percent = v('f-percent');
      if (v('f-window')) condition.window = v('f-window');
    } else if (group === 'channel') {
      if (v('f-low')) condition.low = v('f-low');
      if (v('f-high')) condition.high = v('f-high');
    } else if (group === 'moving') {
      if (v('f-amount')) condition[type.endsWith('_percent') ? 'percent' : 'amount'] = v('f-amount');
      const over = v('f-over');
      // A whole number counts samples (bars); anything else is a window such as 1h.
      if (over) condition.over = /^[0-9]+$/.test(over) ? { bars: Number(over) } : { window: over };
    } else if (group === 'stale') {
      if (v('f-max-age')) condition.max_age = v('f-max-age');
      condition.calendar = v('f-calendar');
    } else if (group === 'divergence') {
      if (v('f-bps')) condition.bps = v('f-bps');
      condition.sources = v('f-sources').split(',').map((s) => s.trim()).filter((s) => s);
    } else if (v('f-threshold')) {
      condition.threshold = v('f-threshold');
    }
    const trigger = { type: v('f-trigger') };
    if (trigger.type === 'every') {
      if (v('f-cooldown')) trigger.cooldown = v('f-cooldown');
      if (v('f-rearm')) trigger.rearm = v('f-rearm');
    } else if (trigger.type === 'once_per_bar' || trigger.type === 'on_bar_close') {
      if (v('f-interval')) trigger.interval = v('f-interval');
    }
    const body = { pair: v('f-pair'), condition, trigger, price: v('f-price') };
    const notify = v('f-notify');
    if (notify === 'email') {
      body.email = { to: v('f-email').split(',').map((a) => a.trim()).filter((a) => a) };
    } else if (notify !== 'none') {
      body.webhook = { url: v('f-webhook'), format: notify };
    }
    return body;
  }

  /** Which inputs a condition type takes: threshold, channel, moving, pct, stale or divergence. */
  function conditionGroup(type) {
    if (type === 'pct_change') return 'pct';
    if (type === 'stale' || type === 'divergence') return type;
    if (type.endsWith('_channel')) return 'channel';
    if (type.startsWith('moving_')) return 'moving';
    return 'threshold';
  }

  function syncFormFields() {
    const type = $('#f-condition').value;
    const group = conditionGroup(type);
    const trigger = $('#f-trigger').value;
    const notify = $('#f-notify').value;
    const shown = {
      threshold: group === 'threshold',
      pct: group === 'pct',
      channel: group === 'channel',
      moving: group === 'moving',
      stale: group === 'stale',
      divergence: group === 'divergence',
      email: notify === 'email',
      webhook: notify !== 'none' && notify !== 'email',
      every: trigger === 'every',
      bar: trigger === 'once_per_bar' || trigger === 'on_bar_close',
    };
    for (const f of document.querySelectorAll('#alert-form [data-show]')) f.hidden = !shown[f.dataset.show];
    setText($('#f-amount-label'), type.endsWith('_percent') ? 'Percent' : 'Amount');
    updateFormNow();
  }

  function updateFormNow() {
    const pair = $('#f-pair').value;
    const rate = pair && state.rates.get(pair);
    const text = rate ? `Now: ${roundDecimal(rate.mid, rate.decimals)} (mid)` : '';
    setText($('#f-now'), text);
    const input = $('#f-threshold');
    const placeholder = rate ? roundDecimal(rate.mid, rate.decimals) : '';
    if (input.placeholder !== placeholder) input.placeholder = placeholder;
  }

  let creating = false;

  async function createAlert(ev) {
    ev.preventDefault();
    if (creating) return;
    clearFormErrors();
    setText($('#alert-ok'), '');
    const button = $('#f-create');
    creating = true;
    button.setAttribute('aria-busy', 'true');
    try {
      const res = await withKey('POST', '/alerts', readForm());
      if (!res) {
        showError('No key given: an API key is needed to create alerts.');
        return;
      }
      if (res.status !== 201) {
        await showApiError(res, 'Creating the alert');
        return;
      }
      const rule = await res.json();
      ruleChanges++;
      upsertRule(rule);
      syncRulesEmpty();
      setText($('#alert-ok'), `Created ${rule.id}: ${rule.pair} ${rule.condition_text}${rule.status === 'triggered' ? ' (it held already, and fired)' : ''}.`);
      scheduleRefresh();
    } catch (e) {
      showError(`Could not reach the API: ${errorText(e)}`);
    } finally {
      creating = false;
      button.removeAttribute('aria-busy');
    }
  }

  let trying = false;

  /**
   * "Try on history": the form's rule, run by the API over the last year of the chart's
   * history (POST /alerts/backtest), its firings listed and ringed on the chart.
   */
  async function tryOnHistory() {
    if (trying) return;
    const button = $('#f-try');
    clearFormErrors();
    setText($('#alert-ok'), '');
    const rule = readForm();
    delete rule.email;
    delete rule.webhook;
    if (chart.pair !== rule.pair) await showChart(rule.pair);
    const n = chart.x.length;
    const result = $('#try-result');
    if (!n) {
      setText(result, `${rule.pair} has no history to try it on yet.`);
      return;
    }
    // At most a year (the API's bound), ending after the last point drawn.
    const end = chart.x[n - 1] + chart.interval;
    const start = Math.max(chart.x[0], end - 366 * DAY);
    const body = {
      rules: [rule],
      from: new Date(start * 1000).toISOString(),
      to: new Date(end * 1000).toISOString(),
      limit: 1000,
    };
    trying = true;
    button.setAttribute('aria-busy', 'true');
    setText(result, 'Trying…');
    try {
      const res = await withKey('POST', '/alerts/backtest', body);
      if (!res) {
        setText(result, '');
        showError('No key given: an API key is needed to try rules.');
        return;
      }
      if (res.status !== 200) {
        setText(result, '');
        await showApiError(res, 'Trying the rule');
        return;
      }
      const page = await res.json();
      chart.markers = page.firings.map((f) => ({ t: Date.parse(f.fired_at) / 1000, v: parseFloat(f.value) }));
      result.dataset.firings = String(page.total);
      $('#chart').dataset.markers = String(chart.markers.length);
      const when = (f) => isoUtc(Date.parse(f.fired_at) / 1000).slice(0, 10);
      const span = `${isoUtc(start).slice(0, 10)} to ${isoUtc(end).slice(0, 10)}`;
      setText(result, page.total
        ? `It would have fired ${page.total} time${page.total === 1 ? '' : 's'} from ${span} (${page.samples} prices): first ${when(page.firings[0])} at ${page.firings[0].value}, last ${when(page.firings[page.firings.length - 1])}${page.next ? ' (the first 1,000 are ringed)' : ''}; ringed on the chart.`
        : `It would not have fired from ${span} (${page.samples} prices).`);
      chart.redraw();
      if (chart.plot) chart.plot.redraw();
    } catch (e) {
      setText(result, '');
      showError(`Could not reach the API: ${errorText(e)}`);
    } finally {
      trying = false;
      button.removeAttribute('aria-busy');
    }
  }

  async function deleteAlert(button) {
    const id = button.dataset.ruleId;
    if (button.getAttribute('aria-busy') === 'true') return;
    clearFormErrors();
    setText($('#alert-ok'), '');
    button.setAttribute('aria-busy', 'true');
    try {
      const res = await withKey('DELETE', `/alerts/${encodeURIComponent(id)}`);
      if (!res) {
        showError('No key given: an API key is needed to delete alerts.');
        return;
      }
      if (res.status !== 204 && res.status !== 404) {
        await showApiError(res, 'Deleting the alert');
        return;
      }
      ruleChanges++;
      removeRule(id);
      setText($('#alert-ok'), res.status === 204 ? `Deleted ${id}.` : `${id} was already gone.`);
      scheduleRefresh();
    } catch (e) {
      showError(`Could not reach the API: ${errorText(e)}`);
    } finally {
      button.removeAttribute('aria-busy');
    }
  }

  const ruleRows = new Map(); // id -> tr

  function triggerText(t) {
    if (!t || t.type === 'once') return 'once';
    if (t.type === 'once_per_bar') return `once per ${t.interval} bar`;
    if (t.type === 'on_bar_close') return `on ${t.interval} bar close`;
    return `every (cooldown ${t.cooldown}, re-arm ${t.rearm})`;
  }

  function upsertRule(rule) {
    let tr = ruleRows.get(rule.id);
    if (!tr) {
      tr = el('tr', { dataset: { ruleId: rule.id, pair: rule.pair } });
      for (const f of ['id', 'pair', 'cond', 'trigger', 'status', 'fired', 'last', 'actions']) {
        tr.append(el('td', { class: f === 'fired' ? 'num' : f, dataset: { field: f } }));
      }
      tr.children[0].append(el('code', { text: rule.id }));
      tr.children[7].append(el('button', {
        type: 'button',
        class: 'danger',
        dataset: { action: 'delete', ruleId: rule.id },
        'aria-label': `Delete rule ${rule.id} (${rule.pair} ${rule.condition_text})`,
        text: 'Delete',
      }));
      ruleRows.set(rule.id, tr);
      $('#rules-body').prepend(tr);
    }
    const cells = tr.children;
    setText(cells[1], rule.pair);
    setText(cells[2], `${rule.price !== 'mid' ? rule.price + ' ' : ''}${rule.condition_text}`);
    const notify = rule.email ? ` · email ${rule.email.to.join(', ')}` : rule.webhook ? ` · webhook (${rule.webhook.format}) ${rule.webhook.url}` : '';
    setText(cells[3], triggerText(rule.trigger) + notify);
    let badge = cells[4].firstChild;
    if (!badge) { badge = el('span'); cells[4].append(badge); }
    badge.className = `status-badge status-${rule.status}`;
    setText(badge, rule.status);
    setText(cells[5], String(rule.fired_count));
    setText(cells[6], rule.last_fired_at ? formatTs(rule.last_fired_at) : '—');
    tr.dataset.status = rule.status;
  }

  function removeRule(id) {
    const tr = ruleRows.get(id);
    if (!tr) return;
    const hadFocus = tr.contains(document.activeElement);
    const next = tr.nextElementSibling || tr.previousElementSibling;
    tr.remove();
    ruleRows.delete(id);
    syncRulesEmpty();
    if (hadFocus) {
      const target = next && next.querySelector('button');
      (target || $('#f-create')).focus();
    }
  }

  function syncRulesEmpty() {
    $('#rules-empty').hidden = ruleRows.size > 0;
  }

  let ruleChanges = 0; // creations and deletions made in this tab

  async function loadRules() {
    const changes = ruleChanges;
    const rules = [];
    let path = '/alerts?limit=100';
    for (let page = 0; path && page < 20; page++) {
      const key = storedKey();
      if (!key) return;
      const body = await getJSON(path, undefined, key);
      rules.push(...(body.alerts || []));
      path = typeof body.next === 'string' ? body.next : null;
    }
    // A list read before this tab's own change would undo it on screen; the
    // refresh scheduled by that change brings the truth.
    if (changes !== ruleChanges) return;
    // Oldest first: new rows are prepended, so the newest ends on top.
    rules.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
    const seen = new Set();
    for (const rule of rules) { upsertRule(rule); seen.add(rule.id); }
    for (const id of [...ruleRows.keys()]) if (!seen.has(id)) removeRule(id);
    // Keep the DOM order newest first without moving rows that are in place.
    const body = $('#rules-body');
    rules.reverse().forEach((rule, i) => {
      const tr = ruleRows.get(rule.id);
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    syncRulesEmpty();
  }

  function firingItem(f) {
    const d = decimalsOf(f.pair);
    const parts = [
      el('time', { datetime: f.fired_at, text: formatTs(f.fired_at) }),
      el('span', { class: 'pair', text: f.pair }),
      el('span', { text: f.condition }),
      el('span', { class: 'value', text: `at ${roundDecimal(f.value, d)}` + (f.previous != null ? ` (was ${roundDecimal(f.previous, d)})` : '') }),
      el('code', { text: f.rule_id }),
    ];
    if (f.source === 'rule-created') parts.push(el('span', { class: 'hint', text: 'held when created' }));
    // Spaces between the parts, so it reads (and copies) as a sentence.
    const li = el('li', { class: 'new', dataset: { ruleId: f.rule_id, pair: f.pair } });
    parts.forEach((p, i) => { if (i) li.append(' '); li.append(p); });
    return li;
  }

  function renderFirings() {
    const items = state.pendingFirings;
    state.pendingFirings = [];
    const feed = $('#feed');
    const frag = document.createDocumentFragment();
    let refreshRules = false;
    for (let i = items.length - 1; i >= 0; i--) {
      frag.append(firingItem(items[i]));
      if (ruleRows.has(items[i].rule_id)) refreshRules = true;
    }
    feed.prepend(frag);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    $('#feed-empty').hidden = true;
    scheduleRefresh(refreshRules);
  }

  let refreshTimer = null;
  let refreshRulesToo = false;

  /** Reload the firing history (and the rules) at most once a second and a half. */
  function scheduleRefresh(rulesToo = true) {
    refreshRulesToo = refreshRulesToo || rulesToo;
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      const rules = refreshRulesToo;
      refreshRulesToo = false;
      try {
        await Promise.all([loadFirings(), rules ? loadRules() : null]);
      } catch (_) { /* shown on the next success */ }
    }, 1500);
  }

  let firingsNext = null;

  function firingRow(f) {
    const d = decimalsOf(f.pair);
    return el('tr', { dataset: { ruleId: f.rule_id, pair: f.pair } }, [
      el('td', null, [el('time', { datetime: f.fired_at, text: formatTs(f.fired_at) })]),
      el('td', { text: f.pair }),
      el('td', null, [el('code', { text: f.rule_id })]),
      el('td', { text: f.condition }),
      el('td', { class: 'num', text: roundDecimal(f.value, d) }),
      el('td', { class: 'num', text: f.previous == null ? '—' : roundDecimal(f.previous, d) }),
    ]);
  }

  async function loadFirings(more) {
    const path = more && firingsNext ? firingsNext : '/alerts/history?limit=25';
    const key = storedKey();
    if (!key) return;
    const body = await getJSON(path, undefined, key);
    const tbody = $('#firings-body');
    const rows = (body.firings || []).map(firingRow);
    if (more) tbody.append(...rows);
    else tbody.replaceChildren(...rows);
    firingsNext = typeof body.next === 'string' ? body.next : null;
    $('#firings-more').hidden = !firingsNext;
    setText($('#firings-status'), tbody.children.length
      ? `The ${tbody.children.length} newest firings.`
      : 'No firing yet.');
  }

  // -------------------------------------------------------------- health

  let lastStats = null;
  const healthRows = new Map();

  function rateText(v) {
    if (v == null || !isFinite(v)) return '…';
    if (v >= 100) return Math.round(v).toLocaleString('en');
    return v.toFixed(1);
  }

  function renderHealth(stats) {
    const prev = lastStats;
    const dt = prev ? (Date.parse(stats.at) - Date.parse(prev.at)) / 1000 : 0;
    const before = new Map(prev ? prev.stages.map((s) => [`${s.pipeline}/${s.stage}`, s]) : []);
    const kinds = new Map(state.stages.map((s, i) => [s.name, { kind: s.kind, i }]));
    const stages = [...stats.stages].sort((a, b) => {
      const ia = kinds.has(a.stage) ? kinds.get(a.stage).i : 999;
      const ib = kinds.has(b.stage) ? kinds.get(b.stage).i : 999;
      return a.pipeline.localeCompare(b.pipeline) || ia - ib || a.stage.localeCompare(b.stage);
    });
    const tbody = $('#health-body');
    const pipelines = new Set(stages.map((s) => s.pipeline));
    stages.forEach((s, index) => {
      const id = `${s.pipeline}/${s.stage}`;
      let row = healthRows.get(id);
      if (!row) {
        const name = el('th', { scope: 'row' }, [pipelines.size > 1 ? `${s.pipeline} / ${s.stage}` : s.stage]);
        const k = kinds.get(s.stage);
        if (k) name.append(el('span', { class: 'stage-kind', text: k.kind }));
        row = {
          tr: el('tr', { dataset: { stage: s.stage, pipeline: s.pipeline } }),
          inRate: el('td', { class: 'num', dataset: { field: 'in' } }),
          outRate: el('td', { class: 'num', dataset: { field: 'out' } }),
          errors: el('td', { class: 'num', dataset: { field: 'errors' } }),
          discarded: el('td', { class: 'num', dataset: { field: 'discarded' } }),
          buffer: el('meter', { min: '0', max: '1', low: '0.5', high: '0.8', optimum: '0' }),
        };
        const bufferCell = el('td', { dataset: { field: 'buffer' } }, [row.buffer]);
        row.tr.append(name, row.inRate, row.outRate, row.errors, row.discarded, bufferCell);
        healthRows.set(id, row);
      }
      if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] || null);
      const p = before.get(id);
      const per = (field) => (p && dt > 0 ? Math.max(0, s[field] - p[field]) / dt : null);
      setText(row.inRate, rateText(per('received')));
      setText(row.outRate, rateText(per('sent')));
      const newErrors = p ? s.errors - p.errors : 0;
      setText(row.errors, s.errors.toLocaleString('en') + (newErrors > 0 ? ` (+${newErrors.toLocaleString('en')})` : ''));
      row.errors.classList.toggle('bad', s.errors > 0);
      setText(row.discarded, s.discarded.toLocaleString('en'));
      row.buffer.value = Math.max(0, Math.min(1, s.buffer || 0));
      row.buffer.textContent = `${Math.round((s.buffer || 0) * 100)}%`;
      row.buffer.title = `buffer ${Math.round((s.buffer || 0) * 100)}% full`;
    });
    lastStats = stats;
    const totalErrors = stages.reduce((n, s) => n + s.errors, 0);
    setText($('#health-status'), `${stages.length} stages; ${totalErrors ? totalErrors.toLocaleString('en') + ' errors in all' : 'no errors'}. Read ${formatTs(stats.at.replace(/\.\d+Z$/, 'Z'))} UTC.`);
  }

  async function pollStats() {
    try {
      renderHealth(await getJSON('/stats'));
    } catch (e) {
      setText($('#health-status'), `Could not read /stats: ${errorText(e)}`);
    } finally {
      setTimeout(pollStats, document.hidden ? 4 * STATS_EVERY_MS : STATS_EVERY_MS);
    }
  }

  // -------------------------------------------------------------- start

  function fillPairSelects() {
    const chartSelect = $('#chart-pair');
    const formSelect = $('#f-pair');
    const keepForm = formSelect.value;
    chartSelect.textContent = '';
    formSelect.textContent = '';
    for (const p of state.pairs) {
      chartSelect.append(el('option', { value: p, text: p }));
      formSelect.append(el('option', { value: p, text: p }));
    }
    formSelect.value = keepForm && state.pairs.includes(keepForm) ? keepForm : state.pairs.includes('EUR/USD') ? 'EUR/USD' : state.pairs[0] || '';
  }

  function wireControls() {
    $('#chart-pair').addEventListener('change', (e) => showChart(e.target.value));
    for (const b of document.querySelectorAll('.ranges button')) {
      b.addEventListener('click', () => setRange(b.dataset.range === 'all' ? 'all' : Number(b.dataset.range)));
    }
    $('#board').addEventListener('click', (e) => {
      const b = e.target.closest('.pair-btn');
      if (b) showChart(b.dataset.pair);
    });
    $('#alert-form').addEventListener('submit', createAlert);
    $('#f-try').addEventListener('click', tryOnHistory);
    $('#f-condition').addEventListener('change', syncFormFields);
    $('#f-trigger').addEventListener('change', syncFormFields);
    $('#f-notify').addEventListener('change', syncFormFields);
    $('#f-pair').addEventListener('change', updateFormNow);
    $('#rules-body').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action="delete"]');
      if (b) deleteAlert(b);
    });
    $('#firings-more').addEventListener('click', () => loadFirings(true).catch((e) => setText($('#firings-status'), errorText(e))));
    setupKeyDialog();
    showKeyState();
    setRange('all');
    syncFormFields();
    watchChartSize();
  }

  async function start() {
    wireControls();
    // Streams first, so nothing between the snapshot and the subscription is lost.
    startStreams();
    pollStats();
    const index = getJSON('/').then((body) => {
      state.stages = body.stages || [];
      if (body.pipeline) setText($('#pipeline-name'), `Pipeline ${body.pipeline}`);
    }).catch(() => {});
    try {
      const [cur] = await Promise.all([getJSON('/currencies'), index]);
      state.currencies = cur.currencies || [];
      state.currencies.forEach((c, i) => state.order.set(c.code, i));
      const codes = state.currencies.map((c) => c.code);
      for (let i = 0; i < codes.length; i++) for (let j = i + 1; j < codes.length; j++) state.pairs.push(`${codes[i]}/${codes[j]}`);
      buildMatrix();
      fillPairSelects();
      await loadSnapshot();
    } catch (e) {
      setText($('#board-status'), `Could not load the rates: ${errorText(e)}`);
    }
    state.ready = true;
    if (state.pending.size) schedule();
    afterRates();
    const first = state.pairs.includes('EUR/USD') ? 'EUR/USD' : state.pairs[0];
    showChart(first);
    if (storedKey()) startAlertPanels();
    else stopAlertPanels();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
