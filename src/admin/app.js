/* leadsync operator page: a small script, no framework. Every value from
 * the API reaches the DOM as text nodes or attributes, never parsed as
 * markup. Times are shown in the browser's time zone. The token lives in
 * sessionStorage (this tab only); a URL fragment #token=... is moved there
 * and removed from the address bar. */
'use strict';

const OUTCOMES = ['ok', 'caught_up', 'http_error', 'timeout', 'connect_error', 'tls_error',
  'too_large', 'bad_answer', 'redirect_error', 'decode_error', 'rule_error', 'config_error',
  'db_error', 'lease_lost', 'cancelled', 'internal_error'];
const CHART_CLASSES = ['ok', 'caught_up', 'http_error', 'rule_error', 'timeout'];
const TOKEN_KEY = 'leadsync.token';

/* ---------------------------------------------------------------- helpers */

function $(id) { return document.getElementById(id); }

/* el('td', {class: 'num'}, 'text', childNode...) */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

function okOutcome(o) { return o === 'ok' || o === 'caught_up'; }

function badge(outcome) {
  if (!outcome) return el('span', { class: 'badge' }, 'never');
  return el('span', { class: 'badge ' + (okOutcome(outcome) ? 'ok' : 'fail') }, outcome);
}

function hashParams() { return new URLSearchParams(location.hash.replace(/^#/, '')); }

function go(params) {
  location.hash = new URLSearchParams(params).toString();
}

function link(params, text) {
  return el('a', { href: '#' + new URLSearchParams(params).toString() }, text);
}

/* "poll run 812" / "postback 4411" with a link; timers and manual edits as text. */
function sourceLink(source, id) {
  if ((source === 'poll' || source === 'dates') && id)
    return link({ view: 'run', id }, 'poll run ' + id);
  if ((source === 'postback' || source === 'chargeback') && id)
    return link({ view: 'postback', id }, source + ' ' + id);
  return el('span', {}, id ? source + ' ' + id : source);
}

function setStatus(msg, isError) {
  const s = $('status');
  s.textContent = msg || '';
  s.className = isError ? 'error' : '';
}

function fmtChange(before, after) {
  const parts = [];
  const keys = new Set([...Object.keys(before || {}), ...Object.keys(after || {})]);
  for (const k of keys) {
    const b = before && k in before ? JSON.stringify(before[k]) : '';
    const a = after && k in after ? JSON.stringify(after[k]) : '';
    parts.push(k + ': ' + b + ' \u2192 ' + a);
  }
  return parts.join(', ');
}

/* ------------------------------------------------------------------- API */

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class AuthError extends Error {}

async function api(path, opts) {
  const t = token();
  if (!t) throw new AuthError('no token');
  const r = await fetch('/admin/api/' + path, Object.assign({
    headers: { Authorization: 'Bearer ' + t },
    cache: 'no-store',
  }, opts || {}));
  if (r.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new AuthError('the token was refused');
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const why = body && body.error ? body.error : r.status + ' ' + r.statusText;
    throw new Error(path.split('?')[0] + ': ' + why);
  }
  return body;
}

/* ---------------------------------------------------- a sortable table */

/* cols: [{key, label, num, cls(row), cell(row) -> Node|string, sort(row)}].
 * Draws a filter box and a table whose headers sort on click; rows get
 * rowClass(row). */
function table(cols, rows, opts) {
  opts = opts || {};
  const wrap = el('div', { class: 'tablewrap' });
  const filter = el('input', { type: 'search', placeholder: 'filter rows', 'aria-label': 'filter rows' });
  const count = el('span', { class: 'muted' });
  wrap.append(el('div', { class: 'tablebar' }, filter, count));
  const tbl = el('table', { class: opts.tableClass || '' });
  const thead = el('thead');
  const tbody = el('tbody');
  tbl.append(thead, tbody);
  wrap.append(tbl);
  let sortCol = null, sortDir = 1;
  const val = (c, r) => (c.sort ? c.sort(r) : r[c.key]);
  const text = (c, r) => {
    const v = c.cell ? c.cell(r) : r[c.key];
    return v instanceof Node ? v.textContent : (v === null || v === undefined ? '' : String(v));
  };
  const hr = el('tr');
  cols.forEach((c) => {
    const th = el('th', { scope: 'col', title: 'sort' }, c.label);
    th.addEventListener('click', () => {
      sortDir = sortCol === c ? -sortDir : 1;
      sortCol = c;
      hr.querySelectorAll('th').forEach((h) => h.classList.remove('sorted-asc', 'sorted-desc'));
      th.classList.add(sortDir > 0 ? 'sorted-asc' : 'sorted-desc');
      draw();
    });
    hr.append(th);
  });
  thead.append(hr);
  function draw() {
    let list = rows.slice();
    if (sortCol) {
      list.sort((a, b) => {
        let x = val(sortCol, a), y = val(sortCol, b);
        if (x === null || x === undefined) x = '';
        if (y === null || y === undefined) y = '';
        if (typeof x === 'number' && typeof y === 'number') return (x - y) * sortDir;
        return String(x).localeCompare(String(y), undefined, { numeric: true }) * sortDir;
      });
    }
    const q = filter.value.trim().toLowerCase();
    tbody.replaceChildren();
    let shown = 0;
    for (const r of list) {
      const cells = cols.map((c) => {
        const v = c.cell ? c.cell(r) : r[c.key];
        const cls = [c.num ? 'num' : '', c.time ? 'time' : '', c.cls ? c.cls(r) : ''].join(' ').trim();
        return el('td', { class: cls || null }, v === null || v === undefined ? '' : v);
      });
      if (q && !cols.some((c) => text(c, r).toLowerCase().includes(q))) continue;
      const tr = el('tr', { class: opts.rowClass ? opts.rowClass(r) : null }, ...cells);
      if (opts.rowData) for (const [k, v] of Object.entries(opts.rowData(r))) tr.dataset[k] = v;
      tbody.append(tr);
      shown++;
    }
    count.textContent = shown + ' of ' + rows.length + ' rows';
  }
  filter.addEventListener('input', draw);
  draw();
  return wrap;
}

function kv(pairs) {
  const dl = el('dl', { class: 'kv' });
  for (const [k, v] of pairs) {
    if (v === null || v === undefined || v === '') continue;
    dl.append(el('dt', {}, k), el('dd', {}, v));
  }
  return dl;
}

function changesTable(changed) {
  if (!changed || !changed.length) return el('p', { class: 'muted' }, 'no lead changed');
  return table([
    { key: 'lead', label: 'Lead', num: true, cell: (r) => link({ view: 'lead', id: r.lead }, r.lead) },
    { key: 'at', label: 'At', time: true, cell: (r) => fmtTime(r.at) },
    { key: 'source', label: 'Source', cell: (r) => sourceLink(r.source, r.source_id) },
    { key: 'change', label: 'Change', cls: () => 'wrap', cell: (r) => fmtChange(r.before, r.after),
      sort: (r) => fmtChange(r.before, r.after) },
  ], changed);
}

/* ------------------------------------------------------------------ board */

/* failing first; then the rest by offer and variant */
function boardRank(r) {
  return boardClass(r) === 'st-fail' ? 0 : 1;
}

function boardClass(r) {
  if (!r.last_outcome) return 'st-none';
  return okOutcome(r.last_outcome) && !(r.consecutive_failures > 0) ? 'st-ok' : 'st-fail';
}

async function showBoard() {
  const [offers, hourly] = await Promise.all([
    api('offers?limit=1000'),
    api('polls/hourly').catch((e) => { if (e instanceof AuthError) throw e; return null; }),
  ]);
  offers.sort((a, b) => boardRank(a) - boardRank(b) ||
    (b.consecutive_failures || 0) - (a.consecutive_failures || 0) ||
    a.offer - b.offer || String(a.variant).localeCompare(String(b.variant)));
  $('board').replaceChildren(table([
    { key: 'offer', label: 'Offer', num: true },
    { key: 'name', label: 'Name' },
    { key: 'variant', label: 'Variant' },
    { key: 'rule', label: 'Rule' },
    { key: 'last_outcome', label: 'Last outcome', cell: (r) => badge(r.last_outcome) },
    { key: 'last_run_at', label: 'Last run', time: true, cell: (r) => r.last_run ?
      link({ view: 'run', id: r.last_run }, fmtTime(r.last_run_at)) : '' },
    { key: 'consecutive_failures', label: 'Failures', num: true },
    { key: 'last_error', label: 'Last error', cls: () => 'err wrap' },
    { key: 'leads_waiting', label: 'Waiting', num: true },
    { key: 'next_due', label: 'Next due', time: true, cell: (r) => fmtTime(r.next_due) },
    { key: 'lease_owner', label: 'Lease' },
    { key: 'check', label: '', sort: () => '', cell: (r) => checkButton(r) },
  ], offers, {
    rowClass: boardClass,
    rowData: (r) => ({ offer: r.offer, variant: r.variant }),
  }));
  drawChart(hourly);
}

function checkButton(r) {
  if (r.enabled === false) return '';
  const b = el('button', { type: 'button', title: 'poll this offer and variant now' }, 'check now');
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await api('offers/' + encodeURIComponent(r.offer) + '/check?variant=' +
        encodeURIComponent(r.variant), { method: 'POST' });
      setStatus('offer ' + r.offer + ' ' + r.variant + ': poll asked for');
    } catch (e) {
      fail(e);
    }
    b.disabled = false;
  });
  return b;
}

/* Stacked bars: one per hour of the last 24, each outcome its colour. */
function drawChart(rows) {
  const box = $('chart');
  if (!rows) {
    box.replaceChildren(el('p', { class: 'muted' }, 'no hourly counts from this daemon'));
    return;
  }
  const hourMs = 3600 * 1000;
  const end = Math.floor(Date.now() / hourMs) * hourMs;
  const start = end - 23 * hourMs;
  const buckets = [];
  for (let i = 0; i < 24; i++) buckets.push({ t: start + i * hourMs, n: {}, total: 0 });
  const seen = new Set();
  for (const r of rows) {
    const t = Date.parse(r.hour);
    const i = Math.round((t - start) / hourMs);
    if (!(i >= 0 && i < 24)) continue;
    const cls = CHART_CLASSES.includes(r.outcome) ? r.outcome : 'other';
    buckets[i].n[cls] = (buckets[i].n[cls] || 0) + Number(r.count || 0);
    buckets[i].total += Number(r.count || 0);
    seen.add(cls);
  }
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const W = 960, H = 200, L = 40, B = 24, bw = (W - L) / 24;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H + B}`, role: 'img',
    'aria-label': 'poll outcomes per hour' });
  s.append(svg('line', { class: 'axis', x1: L, y1: H, x2: W, y2: H }));
  s.append(svg('text', { x: 2, y: 10 }, String(max)), svg('text', { x: 2, y: H }, '0'));
  const order = CHART_CLASSES.concat(['other']);
  buckets.forEach((b, i) => {
    let y = H;
    const x = L + i * bw + 1;
    for (const cls of order) {
      const n = b.n[cls];
      if (!n) continue;
      const h = (n / max) * (H - 10);
      y -= h;
      const rect = svg('rect', { class: 'c-' + cls, x, y, width: bw - 2, height: h });
      rect.append(svg('title', {}, new Date(b.t).toLocaleString() + ': ' + n + ' ' + cls));
      s.append(rect);
    }
    if (i % 3 === 0)
      s.append(svg('text', { x, y: H + 14 },
        new Date(b.t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })));
  });
  const legend = el('div', { class: 'legend' });
  for (const cls of order)
    if (seen.has(cls)) legend.append(el('span', {}, el('span', { class: 'swatch c-' + cls }), cls));
  if (!seen.size) legend.append(el('span', { class: 'muted' }, 'no polls in the last 24 hours'));
  box.replaceChildren(s, legend);
}

/* ------------------------------------------------------------------ polls */

function filterQuery(form, keys) {
  const q = new URLSearchParams();
  const fd = new FormData(form);
  for (const k of keys) {
    const v = fd.get(k);
    if (v !== null && String(v).trim() !== '') q.set(k, String(v).trim());
  }
  return q;
}

function fillForm(form, p) {
  for (const e of form.elements) {
    if (!e.name) continue;
    if (e.type === 'checkbox') e.checked = p.get(e.name) === '1';
    else if (p.has(e.name)) e.value = p.get(e.name);
  }
}

function olderButton(p, rows) {
  const limit = Number(p.get('limit') || 50);
  if (!rows.length || rows.length < limit) return null;
  const next = new URLSearchParams(p);
  next.set('before', rows[rows.length - 1].id);
  return el('p', {}, el('a', { href: '#' + next.toString() }, 'older \u2192'));
}

async function showPolls(p) {
  const form = $('polls-filter');
  fillForm(form, p);
  const q = filterQuery(form, ['offer', 'variant', 'outcome', 'failed', 'since']);
  if (p.get('before')) q.set('before', p.get('before'));
  const rows = await api('polls' + (q.toString() ? '?' + q : ''));
  $('polls').replaceChildren(table([
    { key: 'id', label: 'Run', num: true, cell: (r) => link({ view: 'run', id: r.id }, r.id) },
    { key: 'started', label: 'Started', time: true, cell: (r) => fmtTime(r.started) },
    { key: 'offer', label: 'Offer', num: true },
    { key: 'offer_name', label: 'Name' },
    { key: 'variant', label: 'Variant' },
    { key: 'outcome', label: 'Outcome', cell: (r) => badge(r.outcome) },
    { key: 'http_status', label: 'HTTP', num: true },
    { key: 'duration_ms', label: 'ms', num: true },
    { key: 'leads_asked', label: 'Asked', num: true },
    { key: 'leads_changed', label: 'Changed', num: true },
    { key: 'error', label: 'Error', cls: () => 'err wrap' },
  ], rows, { rowClass: (r) => (okOutcome(r.outcome) ? 'st-ok' : 'st-fail') }),
  olderButton(new URLSearchParams(Object.assign({ view: 'polls' }, Object.fromEntries(q))), rows) || '');
}

async function showRun(p) {
  const id = p.get('id');
  $('run-id').textContent = id;
  const r = await api('polls/' + encodeURIComponent(id));
  const parts = [];
  if (r.error) parts.push(el('div', { class: 'errorbox', id: 'run-error' }, r.error));
  parts.push(kv([
    ['offer', link({ view: 'polls', offer: r.offer }, r.offer + (r.offer_name ? ' ' + r.offer_name : ''))],
    ['variant', r.variant], ['rule', r.rule], ['outcome', badge(r.outcome)],
    ['started', fmtTime(r.started)], ['finished', fmtTime(r.finished)],
    ['duration', r.duration_ms !== null && r.duration_ms !== undefined ? r.duration_ms + ' ms' : ''],
    ['request', el('code', { id: 'run-request' }, (r.method || '') + ' ' + (r.url || ''))],
    ['HTTP status', r.http_status], ['bytes', r.bytes], ['content type', r.content_type],
    ['leads', ['asked', 'changed', 'unknown', 'refused', 'unrecognised', 'skipped', 'no_ext']
      .map((k) => k + ' ' + (r['leads_' + k] ?? 0)).join(', ')],
    ['pages', r.pages], ['worker', r.worker], ['notes', r.notes],
  ]));
  parts.push(el('h3', {}, 'Answer excerpt'),
    r.answer_head ? el('pre', { id: 'run-answer' }, r.answer_head) : el('p', { class: 'muted' }, 'none kept'));
  parts.push(el('h3', {}, 'Leads changed'), changesTable(r.changed));
  $('run').replaceChildren(...parts);
}

/* -------------------------------------------------------------- postbacks */

async function showPostbacks(p) {
  const form = $('postbacks-filter');
  fillForm(form, p);
  const q = filterQuery(form, ['advertiser', 'lead', 'errors', 'since']);
  if (p.get('before')) q.set('before', p.get('before'));
  const rows = await api('postbacks' + (q.toString() ? '?' + q : ''));
  const isErr = (r) => (r.http_status || 0) >= 400;
  const shown = rows.slice().sort((a, b) => isErr(b) - isErr(a) || b.id - a.id);
  $('postbacks').replaceChildren(table([
    { key: 'id', label: 'Id', num: true, cell: (r) => link({ view: 'postback', id: r.id }, r.id) },
    { key: 'at', label: 'At', time: true, cell: (r) => fmtTime(r.at) },
    { key: 'advertiser', label: 'Adv.', num: true },
    { key: 'advertiser_name', label: 'Advertiser' },
    { key: 'http_status', label: 'HTTP', num: true },
    { key: 'outcome', label: 'Outcome' },
    { key: 'lead', label: 'Lead', num: true, cell: (r) => r.lead ? link({ view: 'lead', id: r.lead }, r.lead) : '' },
    { key: 'method', label: 'Method' },
    { key: 'path', label: 'Request', cls: () => 'wrap', cell: (r) => (r.path || '') + (r.query ? '?' + r.query : '') },
    { key: 'error', label: 'Error', cls: () => 'err wrap' },
    { key: 'remote', label: 'From' },
  ], shown, { rowClass: (r) => (isErr(r) ? 'st-fail' : 'st-ok') }),
  olderButton(new URLSearchParams(Object.assign({ view: 'postbacks' }, Object.fromEntries(q))), rows) || '');
}

async function showPostback(p) {
  const id = p.get('id');
  $('postback-id').textContent = id;
  const r = await api('postbacks/' + encodeURIComponent(id));
  const parts = [];
  if (r.error) parts.push(el('div', { class: 'errorbox' }, r.error));
  parts.push(kv([
    ['at', fmtTime(r.at)], ['from', r.remote],
    ['advertiser', r.advertiser ? r.advertiser + (r.advertiser_name ? ' ' + r.advertiser_name : '') : ''],
    ['request', el('code', {}, (r.method || '') + ' ' + (r.path || '') + (r.query ? '?' + r.query : ''))],
    ['HTTP status', r.http_status], ['outcome', r.outcome],
    ['lead', r.lead ? link({ view: 'lead', id: r.lead }, r.lead) : ''],
  ]));
  parts.push(el('h3', {}, 'Body'), r.body ? el('pre', {}, r.body) : el('p', { class: 'muted' }, 'empty'));
  parts.push(el('h3', {}, 'Lead changes'), changesTable(r.changed));
  $('postback').replaceChildren(...parts);
}

/* ------------------------------------------------------------------- lead */

async function showLead(p) {
  const form = $('lead-form');
  fillForm(form, p);
  const id = p.get('id');
  if (!id) { $('lead').replaceChildren(); return; }
  const r = await api('leads/' + encodeURIComponent(id));
  const fields = ['offer', 'ext', 'status', 'reason', 'comment', 'goal', 'created', 'approved_at',
    'hold_until', 'base', 'counts', 'curr', 'track', 'wm', 'pay', 'ref', 'click_id'];
  const isTime = (k) => k === 'created' || k === 'approved_at' || k === 'hold_until';
  const pairs = fields.filter((k) => k in r).map((k) => [k, isTime(k) ? fmtTime(r[k]) :
    (r[k] !== null && typeof r[k] === 'object' ? JSON.stringify(r[k]) : r[k])]);
  const ol = el('ol', { class: 'timeline', id: 'timeline' });
  for (const h of r.history || []) {
    ol.append(el('li', { 'data-source': h.source, 'data-source-id': h.source_id ?? '' },
      el('strong', {}, fmtTime(h.at)), ' \u2014 ', sourceLink(h.source, h.source_id),
      el('div', { class: 'muted' }, fmtChange(h.before, h.after))));
  }
  $('lead').replaceChildren(kv([['lead', r.id ?? id]].concat(pairs)), el('h3', {}, 'History, oldest first'),
    (r.history || []).length ? ol : el('p', { class: 'muted' }, 'no change recorded'));
}

/* ----------------------------------------------------------------- router */

const VIEWS = {
  board: { section: 'view-board', nav: 'board', show: showBoard },
  polls: { section: 'view-polls', nav: 'polls', show: showPolls },
  run: { section: 'view-run', nav: 'polls', show: showRun },
  postbacks: { section: 'view-postbacks', nav: 'postbacks', show: showPostbacks },
  postback: { section: 'view-postback', nav: 'postbacks', show: showPostback },
  lead: { section: 'view-lead', nav: 'lead', show: showLead },
};

function fail(e) {
  if (e instanceof AuthError) {
    showLogin(e.message === 'no token' ? '' : e.message);
    return;
  }
  setStatus(String(e.message || e), true);
}

function showLogin(msg) {
  $('login').hidden = false;
  $('nav').hidden = true;
  $('logout').hidden = true;
  document.querySelectorAll('.view').forEach((s) => { s.hidden = true; });
  setStatus(msg, !!msg);
  document.body.dataset.ready = '1';
}

let seq = 0;
async function route() {
  const p = hashParams();
  if (p.has('token')) {
    sessionStorage.setItem(TOKEN_KEY, p.get('token'));
    p.delete('token');
    history.replaceState(null, '', location.pathname + location.search + (p.toString() ? '#' + p : ''));
  }
  if (!token()) { showLogin(''); return; }
  const v = VIEWS[p.get('view')] || VIEWS.board;
  const mine = ++seq;
  delete document.body.dataset.ready;
  $('login').hidden = true;
  $('nav').hidden = false;
  $('logout').hidden = false;
  setStatus('loading\u2026');
  document.querySelectorAll('.view').forEach((s) => { s.hidden = s.id !== v.section; });
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.view === v.nav));
  try {
    await v.show(p);
    if (mine === seq) setStatus('');
  } catch (e) {
    if (mine === seq) fail(e);
  }
  if (mine === seq) document.body.dataset.ready = '1';
}

function formTo(id, view, keys) {
  $(id).addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = filterQuery(ev.target, keys);
    q.set('view', view);
    go(q);
  });
}

function init() {
  $('tz').textContent = 'times in ' + Intl.DateTimeFormat().resolvedOptions().timeZone;
  const sel = $('polls-filter').elements.outcome;
  for (const o of OUTCOMES) sel.append(el('option', {}, o));
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('login-token').value.trim());
    $('login-token').value = '';
    route();
  });
  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('logged out');
  });
  formTo('polls-filter', 'polls', ['offer', 'variant', 'outcome', 'failed', 'since']);
  formTo('postbacks-filter', 'postbacks', ['advertiser', 'lead', 'errors', 'since']);
  formTo('lead-form', 'lead', ['id']);
  window.addEventListener('hashchange', route);
  route();
}

document.addEventListener('DOMContentLoaded', init);
