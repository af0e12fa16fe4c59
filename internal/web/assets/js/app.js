// The dashboard: a page per hash route (#/login, #/overview, #/calendar,
// #/utilization, #/plan), data from the API, refreshed on the server's
// change events.
import { call, token, setToken, clearToken, errorText, streamEvents, APIError } from './api.js';
import { build, tooltip, utilization, bytes, fmtBytes, fmtCPU, fmtTime, esc } from './gantt.js';

performance.mark('app-start');
const $ = (id) => document.getElementById(id);
const vis = window.vis;

// The whole calendar: from a day back to two weeks ahead. The utilization
// page reads all of it; the calendar page opens on a day around now and
// reads only the window shown plus a margin (see loadWindow), the whole
// on "Fit all".
const calFrom = '-24h';
const calTo = '336h';
const hour = 3600e3;

// The chart opens on 12 h from 2 h back and reads just that first, so that
// its first drawing comes soon; the margins on each side follow once it is
// drawn (see loadWindow). A page opened on the calendar with a token has
// started reading that window before anything else (early.js), while the
// libraries load, the login is checked and the chart is made.
function openingWindow(now) {
  const start = now - 2 * hour;
  const end = now + 10 * hour;
  return { start, end, from: start, to: end };
}
const early = window.vgridEarly;
let opening = early ? { start: early.from, end: early.to, from: early.from, to: early.to } : openingWindow(Date.now());
let prefetched = early ? early.cal : null;

const state = {
  who: null,
  route: '',
  stopEvents: null,
  dirty: new Set(),
  debounce: 0,
  dirtySince: 0, // when the first change of the burst came
  timeline: null,
  groups: null,
  items: null,
  model: [],
  details: new Map(),
  loaded: null, // {from, to} in ms: the window of the calendar loaded
  loading: null, // the load under way (a promise), at most one
  wantAgain: false,
  groupSig: '',
  revision: 0,
  graph: null,
  planTimeline: null,
  plan: null,
  rendered: false,
  marginsDue: false, // the first window is loaded alone: its margins follow its drawing
};

// window.vgrid lets tests and the benchmark read what the page drew.
window.vgrid = {
  timelineItems: () => state.model.slice(),
  timeline: () => state.timeline,
  fit: () => fitAll(false),
  loaded: () => (state.loaded ? { from: new Date(state.loaded.from).toISOString(), to: new Date(state.loaded.to).toISOString() } : null),
  planItems: () => (state.plan ? state.plan.model.slice() : []),
  plan: () => state.lastPlan || null,
  live: () => $('live').classList.contains('on'),
  loading: () => !!state.loading,
  changed: (kind) => markDirty(kind), // as a change event of kind would
  refreshes: 0,
};

function show(route) {
  for (const s of document.querySelectorAll('.page')) s.hidden = s.id !== 'page-' + route;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.route === route);
  state.route = route;
}

async function route() {
  const r = (location.hash.replace(/^#\/?/, '') || 'overview').split('?')[0];
  if (!token() || !state.who) {
    if (token() && !state.who && await checkToken(token(), false)) return route();
    show('login');
    return;
  }
  const known = ['overview', 'calendar', 'utilization', 'plan'];
  const page = known.includes(r) ? r : 'overview';
  show(page);
  await refresh(page);
}

async function refresh(page) {
  try {
    if (page === 'overview') await loadOverview();
    else if (page === 'calendar') await loadCalendar(state.loaded ? 'same' : 'view');
    else if (page === 'utilization') await loadUtilization();
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return logout('Your token is no longer accepted: ' + e.message);
    const el = page === 'calendar' ? $('cal-status') : page === 'overview' ? $('overview') : $('util-summary');
    el.textContent = errorText(e);
  }
}

// checkToken asks the server who the token is; a refused token is said
// on the login page (when asked to).
async function checkToken(tok, say) {
  try {
    const who = await call('GET', '/whoami', undefined, tok);
    if (who.role === 'node' || who.role === 'join') {
      if (say) $('login-error').textContent = `This is a ${who.role} token: log in with a user or admin token.`;
      return false;
    }
    setToken(tok);
    if (!state.who) performance.mark('who');
    state.who = who;
    $('who').textContent = `${who.project} · ${who.role}`;
    $('nav').hidden = false;
    $('logout').hidden = false;
    startEvents();
    return true;
  } catch (e) {
    if (say) {
      $('login-error').textContent = e instanceof APIError && e.status === 401
        ? 'That token was refused: ' + e.message
        : 'Cannot reach the server: ' + errorText(e);
    }
    if (e instanceof APIError && e.status === 401) clearToken();
    return false;
  }
}

function logout(msg) {
  if (state.stopEvents) state.stopEvents();
  state.stopEvents = null;
  clearToken();
  state.who = null;
  $('who').textContent = '';
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('login-error').textContent = msg || '';
  $('token').value = '';
  location.hash = '#/login';
  show('login');
}

// Live updates: each change marks its kind dirty; 200 ms after the last
// one the page shown reads again what it draws from those kinds.
const affects = {
  overview: ['workspaces', 'leases', 'clusters', 'networks', 'volumes', 'images', 'nodes', 'grids'],
  calendar: ['workspaces', 'leases', 'clusters', 'volumes', 'grids'],
  utilization: ['workspaces', 'leases', 'clusters', 'grids'],
};

function startEvents() {
  if (state.stopEvents) return;
  state.stopEvents = streamEvents({
    onOpen: () => { if (state.route) markDirty('*'); },
    onEvent: (ev) => markDirty(ev.kind),
    onLive: (on) => {
      $('live').classList.toggle('on', on);
      $('live').classList.toggle('off', !on);
      $('live').title = 'live updates: ' + (on ? 'on' : 'reconnecting');
    },
    on401: () => logout('Your token is no longer accepted.'),
  });
}

// markDirty notes a change of kind and refreshes the page 200 ms after the
// last of a burst of changes, but no later than a second after the first:
// a grid's heartbeats (a change of a host every few milliseconds on a
// hundred hosts) would otherwise put the refresh off for ever.
function markDirty(kind) {
  state.dirty.add(kind);
  const now = performance.now();
  if (!state.debounce) state.dirtySince = now;
  clearTimeout(state.debounce);
  state.debounce = setTimeout(() => {
    state.debounce = 0;
    const kinds = state.dirty;
    state.dirty = new Set();
    const page = state.route;
    const want = affects[page];
    if (!want) return;
    if (kinds.has('*') || want.some((k) => kinds.has(k))) {
      window.vgrid.refreshes++;
      refresh(page);
    }
  }, Math.max(0, Math.min(200, state.dirtySince + 1000 - now)));
}

// ---- overview

function table(title, cols, rows, empty) {
  let h = `<h2>${esc(title)} <span class="muted">(${rows.length})</span></h2>`;
  if (!rows.length) return h + `<p class="muted">${esc(empty || 'none')}</p>`;
  h += '<table><thead><tr>' + cols.map((c) => `<th>${esc(c[0])}</th>`).join('') + '</tr></thead><tbody>';
  for (const r of rows) {
    h += '<tr>' + cols.map((c) => {
      const v = c[1](r);
      const cls = c[2] ? ` class="${c[2](r)}"` : '';
      return `<td${cls}>${esc(v == null ? '' : v)}</td>`;
    }).join('') + '</tr>';
  }
  return h + '</tbody></table>';
}

async function list(path, key) {
  try {
    const d = await call('GET', path);
    return { rows: (d && d[key]) || [] };
  } catch (e) {
    if (e instanceof APIError && e.status === 404) return { rows: [], missing: true };
    throw e;
  }
}

function res(r) { return r ? `${fmtCPU(r.millicpu || 0)}, ${fmtBytes(bytes(r.memory))}` : ''; }

async function loadOverview() {
  const [nodes, ws, cl, nets, vols, imgs, grids] = await Promise.all([
    list('/nodes', 'nodes'), list('/workspaces?limit=1000', 'workspaces'), list('/clusters', 'clusters'),
    list('/networks', 'networks'), list('/volumes', 'volumes'), list('/images', 'images'), list('/grids', 'grids'),
  ]);
  let h = table('Hosts', [
    ['name', (n) => n.name],
    ['state', (n) => (n.state || (n.ready ? 'Ready' : 'NotReady')) + (n.cordoned ? ', cordoned' : ''), (n) => 'state-' + (n.state || '')],
    ['capacity', (n) => res(n.capacity)],
    ['allocated', (n) => res(n.allocated)],
    ['workspaces', (n) => n.workspaces, () => 'num'],
  ], nodes.rows);
  h += table('Workspaces', [
    ['name', (w) => (w.spec && w.spec.name) || w.name],
    ['project', (w) => w.project],
    ['state', (w) => w.status && w.status.state, (w) => 'state-' + ((w.status && w.status.state) || '')],
    ['host', (w) => w.status && w.status.node],
    ['lease', (w) => (w.spec && w.spec.lease && w.spec.lease.kind) || 'immediate'],
    ['expires', (w) => fmtTime(w.status && w.status.expires_at)],
  ], ws.rows);
  h += table('Clusters', [['name', (c) => c.name], ['state', (c) => c.state], ['ready', (c) => c.ready, () => 'num']], cl.rows);
  h += table('Networks', [['name', (n) => n.name], ['subnet', (n) => n.subnet], ['vni', (n) => n.vni, () => 'num']], nets.rows);
  h += table('Volumes', [['name', (v) => v.name], ['size', (v) => v.size], ['host', (v) => v.node]], vols.rows);
  h += table('Images', [['name', (i) => i.name], ['project', (i) => i.project || '(operator)'], ['public', (i) => (i.public ? 'yes' : '')]], imgs.rows);
  h += table('Grids', [['name', (g) => g.name], ['state', (g) => g.state], ['start', (g) => fmtTime(g.start)], ['end', (g) => fmtTime(g.end)]],
    grids.rows, grids.missing ? 'this server does not serve grids yet' : 'none');
  $('overview').innerHTML = h;
}

// ---- calendar

async function fetchCalendar(from = calFrom, to = calTo) {
  return call('GET', `/calendar?format=json&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
}

// Windowed loading: vis-timeline's cost grows with the items it holds,
// not with those shown, so the page holds the bars of the window shown
// plus margins. It opens with a third of the window's width on each side;
// when the view comes within a quarter width of an edge of what is
// loaded (vis-timeline draws that far beyond the window), it reads the
// missing slice up to a whole width beyond the view and adds it. When
// what is loaded grows past six widths (panning on, or zooming in after
// "Fit all"), the bars far from the view are dropped, with no request.
// A view away from everything loaded (a jump) reads its window afresh.
function spanOf(w) {
  const [start, end] = [+w.start, +w.end];
  return { start, end, span: end - start };
}

function needsLoad(w) {
  const l = state.loaded;
  if (!l) return true;
  const { start, end, span } = spanOf(w);
  return start - span / 4 < l.from || end + span / 4 > l.to;
}

function tooWide(w) {
  const l = state.loaded;
  return l && l.to - l.from > 6 * spanOf(w).span;
}

function ensureTimeline() {
  if (state.timeline) return;
  state.groups = new vis.DataSet();
  state.items = new vis.DataSet();
  // (The opening window of a page opened on the calendar is the one being
  // read already; later, it is around now.)
  if (!prefetched) opening = openingWindow(Date.now());
  state.timeline = new vis.Timeline($('gantt'), state.items, state.groups, {
    stack: true, showCurrentTime: true, zoomKey: 'ctrlKey', orientation: 'top',
    start: new Date(opening.start), end: new Date(opening.end),
    maxHeight: '75vh', verticalScroll: true, horizontalScroll: false,
    tooltip: { followMouse: true, overflowMethod: 'cap', template: tooltip((id) => state.details.get(id)) },
    groupOrder: 'id', selectable: true, multiselect: false,
    margin: { item: { horizontal: 0, vertical: 2 } },
  });
  state.timeline.on('changed', () => {
    if (!state.rendered && state.items.length > 0) {
      state.rendered = true;
      performance.mark('gantt-rendered');
    }
    if (state.rendered && state.marginsDue) loadMargins();
  });
  // rangechange comes while dragging, rangechanged at its end; either
  // may call for more of the calendar. One check per 100 ms at most.
  let pending = 0;
  const check = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = 0;
      if (state.route !== 'calendar') return;
      const w = state.timeline.getWindow();
      if (needsLoad(w)) loadCalendar('view').catch(showCalendarError);
      else if (tooWide(w) && !state.loading) trim(w);
    }, 100);
  };
  state.timeline.on('rangechange', check);
  state.timeline.on('rangechanged', check);
  $('cal-fit').addEventListener('click', () => fitAll(true).catch(showCalendarError));
  $('cal-now').addEventListener('click', () => state.timeline.moveTo(new Date()));
}

// loadMargins reads the margins of the first window, after its drawing.
function loadMargins() {
  state.marginsDue = false;
  setTimeout(() => { if (state.route === 'calendar') loadCalendar('view').catch(showCalendarError); }, 0);
}

function showCalendarError(e) {
  if (e instanceof APIError && e.status === 401) return logout('Your token is no longer accepted: ' + e.message);
  $('cal-status').textContent = errorText(e);
}

// fitAll loads the whole calendar and fits the chart to it.
async function fitAll(animate) {
  if (!state.timeline) return;
  await loadCalendar('all');
  state.timeline.fit({ animation: animate });
}

// The bars loaded: bar ID → {items (the bar, and its staging band), model,
// detail, sig (its JSON, to update only bars that changed: an update makes
// vis-timeline redraw the item)}.
const bars = new Map();

// merge puts a calendar answer's bars into the chart. exact: the answer
// covers all that is loaded, so bars it lacks are gone; otherwise it is a
// slice, whose bars are added or updated.
async function merge(b, exact) {
  const byBar = new Map();
  for (const it of b.items) {
    const id = it.type === 'background' ? it.id.slice(0, -'|stage'.length) : it.id;
    if (!byBar.has(id)) byBar.set(id, []);
    byBar.get(id).push(it);
  }
  const changed = [];
  const gone = [];
  for (const m of b.model) {
    const items = byBar.get(m.id) || [];
    const sig = JSON.stringify(items);
    const old = bars.get(m.id);
    if (old && old.sig === sig) continue;
    if (old) for (const it of old.items) if (!items.some((n) => n.id === it.id)) gone.push(it.id);
    bars.set(m.id, { items, model: m, detail: b.details.get(m.id), sig });
    changed.push(...items);
  }
  if (exact) {
    const keep = new Set(b.model.map((m) => m.id));
    for (const [id, e] of bars) {
      if (keep.has(id)) continue;
      gone.push(...e.items.map((it) => it.id));
      bars.delete(id);
    }
  }
  // Rows: an exact answer has them all; a slice may add some.
  const groups = exact ? b.groups : b.groups.filter((g) => !state.groups.get(g.id));
  if (exact) {
    const keep = new Set(b.groups.map((g) => g.id));
    const old = state.groups.getIds().filter((id) => !keep.has(id));
    if (old.length) state.groups.remove(old);
  }
  const gsig = JSON.stringify(groups);
  if (groups.length && gsig !== state.groupSig) state.groups.update(groups);
  if (exact) state.groupSig = gsig;
  if (gone.length) state.items.remove(gone);
  // A slice (read while panning) goes in by chunks, a frame apart: one
  // frame adding hundreds of bars would stall the pan.
  const chunk = exact ? changed.length : 150;
  for (let i = 0; i < changed.length; i += chunk) {
    if (i) await new Promise((r) => requestAnimationFrame(r));
    state.items.update(changed.slice(i, i + chunk));
  }
  updateModel();
}

// trim drops the bars outside a window and a width on each side of the
// view.
function trim(w) {
  const { start, end, span } = spanOf(w);
  const from = start - span;
  const to = end + span;
  const gone = [];
  for (const [id, e] of bars) {
    if (Date.parse(e.model.to) > from && Date.parse(e.model.from) < to) continue;
    gone.push(...e.items.map((it) => it.id));
    bars.delete(id);
  }
  state.loaded = { from, to };
  if (gone.length) state.items.remove(gone);
  updateModel();
}

function updateModel() {
  state.model = [];
  state.details = new Map();
  for (const [id, e] of bars) {
    state.model.push(e.model);
    state.details.set(id, e.detail);
  }
  const leases = new Set(state.model.filter((m) => !m.masked).map((m) => m.lease));
  const l = state.loaded;
  $('cal-status').textContent = `${state.model.length} bars of ${leases.size} leases on ${state.groups.length} hosts` +
    ` · revision ${state.revision} · loaded ${fmtTime(l.from)} – ${fmtTime(l.to)}`;
}

// loadCalendar reads the calendar into the chart: 'view' what the view
// lacks, 'same' what is loaded again (a live update), 'all' the whole
// calendar. One load runs at a time; a view load asked for meanwhile
// runs after it, for the view then.
async function loadCalendar(what = 'view') {
  ensureTimeline();
  if (state.loading) {
    if (what === 'view') {
      state.wantAgain = true;
      return state.loading;
    }
    await state.loading.catch(() => {});
  }
  state.loading = loadWindow(what);
  try {
    await state.loading;
  } finally {
    state.loading = null;
  }
  if (state.wantAgain) {
    state.wantAgain = false;
    if (needsLoad(state.timeline.getWindow())) await loadCalendar('view');
  }
}

const iso = (ms) => new Date(ms).toISOString();

async function loadWindow(what) {
  const l = state.loaded;
  const { start, end, span } = spanOf(state.timeline.getWindow());
  if (what === 'all') {
    const cal = await fetchCalendar();
    await apply(cal, true, { from: Date.parse(cal.from), to: Date.parse(cal.to) });
  } else if (what === 'same' && l) {
    await apply(await fetchCalendar(iso(l.from), iso(l.to)), true, l);
  } else if (!l || end + span / 4 < l.from || start - span / 4 > l.to) {
    // Nothing loaded near the view: its window and a third of its width
    // each side; the first time, the window alone, the margins after.
    const first = !state.rendered;
    const w = first ? { from: Math.floor(start), to: Math.ceil(end) } : { from: Math.floor(start - span / 3), to: Math.ceil(end + span / 3) };
    let cal = null;
    if (prefetched && w.from === opening.from && w.to === opening.to) cal = await prefetched;
    prefetched = null;
    await apply(cal || await fetchCalendar(iso(w.from), iso(w.to)), true, w);
    // The margins are read once the window is drawn (see ensureTimeline);
    // an empty window has nothing to draw.
    if (first) {
      state.marginsDue = true;
      if (state.rendered && state.items.length === 0) loadMargins();
    }
  } else {
    // The slices missing up to a width beyond the view, read at once.
    const slices = [];
    if (start - span / 4 < l.from) slices.push({ from: Math.floor(start - span), to: l.from });
    if (end + span / 4 > l.to) slices.push({ from: l.to, to: Math.ceil(end + span) });
    const cals = await Promise.all(slices.map((s) => fetchCalendar(iso(s.from), iso(s.to))));
    // A live update may have reloaded meanwhile: slices extend only what
    // is still loaded, as it is.
    if (state.loaded !== l) return;
    const merged = { from: l.from, to: l.to };
    for (const s of slices) {
      merged.from = Math.min(merged.from, s.from);
      merged.to = Math.max(merged.to, s.to);
    }
    for (const cal of cals) await apply(cal, false, null);
    state.loaded = merged;
    updateModel();
    if (tooWide(state.timeline.getWindow())) trim(state.timeline.getWindow());
  }
}

// apply merges one answer; loaded is the window it makes loaded (exact
// answers only).
async function apply(cal, exact, loaded) {
  if (!state.rendered) performance.mark('gantt-data');
  state.revision = cal.revision;
  if (loaded) state.loaded = loaded;
  const b = build(cal);
  // The first time, rows before bars: vis-timeline then knows which rows
  // are out of sight and draws no bars in them.
  if (state.groups.length === 0 && b.items.length > 0) {
    state.groups.update(b.groups);
    state.groupSig = JSON.stringify(b.groups);
    await new Promise((r) => {
      state.timeline.once('changed', r);
      setTimeout(r, 1000); // should no redraw come (a hidden page)
    });
    if (!state.rendered) performance.mark('rows-drawn');
  }
  await merge(b, exact);
  if (!b.items.length && !state.rendered) {
    state.rendered = true;
    performance.mark('gantt-rendered');
  }
}

// ---- utilization

async function loadUtilization() {
  const cal = await fetchCalendar();
  const u = utilization(cal);
  if (!state.graph) {
    const groups = new vis.DataSet([
      { id: 'cpu', content: 'CPU booked %' },
      { id: 'mem', content: 'memory booked %' },
    ]);
    const now = Date.now();
    state.graph = new vis.Graph2d($('util'), new vis.DataSet(), groups, {
      drawPoints: false, interpolation: false, showCurrentTime: true, height: '420px',
      legend: { left: { position: 'top-left' } },
      dataAxis: { left: { range: { min: 0, max: 100 }, title: { text: '% of capacity booked' } } },
      start: new Date(now - 24 * 3600e3), end: new Date(now + 72 * 3600e3),
    });
  }
  state.graph.setItems(new vis.DataSet(u.points));
  $('util-summary').textContent = `capacity ${fmtCPU(u.cpuCap)}, ${fmtBytes(u.memCap)} · peak booked ${u.peakCPU}% CPU, ${u.peakMem}% memory over the window`;
}

// ---- plan

function planBody() {
  const set = $('plan-set').value.split('\n').map((s) => s.trim()).filter(Boolean);
  const body = { spec: $('plan-spec').value };
  if (set.length) body.set = set;
  return { body, set };
}

function dur(ns) {
  const s = Math.round((ns || 0) / 1e9);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm' + (s % 60 ? (s % 60) + 's' : '');
  return Math.floor(m / 60) + 'h' + (m % 60 ? (m % 60) + 'm' : '');
}

function drawPlan(p) {
  let h = `<div class="plan-summary ${p.fits ? 'fits' : 'short'}">`;
  if (p.fits) {
    h += `<p class="ok">Grid ${esc(p.grid)} fits: ${esc(fmtTime(p.start))} – ${esc(fmtTime(p.end))}` +
      (p.delay_ns ? `, ${esc(dur(p.delay_ns))} after the start asked for (${esc(fmtTime(p.requested))})` : ', starting when asked') + '.</p>';
  } else {
    h += `<p class="error">Grid ${esc(p.grid)} does not fit: ${esc((p.shortfall && p.shortfall.message) || 'no window found')}</p>`;
  }
  h += `<p class="muted">plan ${esc(p.id)} · calendar revision ${esc(p.calendar_revision)} · ${esc(p.tries)} windows tried · expires ${esc(fmtTime(p.expires_at))}</p></div>`;
  if (p.parts && p.parts.length) {
    h += '<h2>Parts</h2><table><thead><tr><th>part</th><th>kind</th><th>lease</th><th>window</th><th>members → hosts</th></tr></thead><tbody>';
    for (const part of p.parts) {
      const mem = (part.members || []).map((m) => `${m.name} → ${m.host}${m.stage ? ' (staged from ' + fmtTime(m.stage_at) + ')' : ''}`).join('\n');
      h += `<tr><td>${esc(part.name)}</td><td>${esc(part.kind)}</td><td>${esc(part.lease)} (${esc(part.lease_kind)})</td>` +
        `<td>${esc(fmtTime(part.start))} – ${esc(fmtTime(part.end))}</td><td><pre>${esc(mem)}</pre></td></tr>`;
    }
    h += '</tbody></table>';
  }
  if (p.effects && p.effects.length) {
    h += '<h2>Effects on other leases</h2><ul>';
    for (const e of p.effects) {
      h += `<li>${esc(e.action)} ${esc(e.lease)}${e.project ? ' (' + esc(e.project) + ')' : ''}${e.at ? ' at ' + esc(fmtTime(e.at)) : ''}${e.by_ns ? ' by ' + esc(dur(e.by_ns)) : ''}</li>`;
    }
    h += '</ul>';
  } else if (p.fits) {
    h += '<p class="muted">No other lease is affected.</p>';
  }
  $('plan-result').innerHTML = h;
  state.plan = null;
  if (p.gantt) {
    const b = build(p.gantt, 'plan|');
    state.plan = b;
    if (!state.planTimeline) {
      state.planTimeline = new vis.Timeline($('plan-gantt'), new vis.DataSet(), new vis.DataSet(), {
        stack: true, showCurrentTime: true, zoomKey: 'ctrlKey', maxHeight: '60vh', verticalScroll: true, groupOrder: 'id',
        tooltip: { template: tooltip((id) => state.plan && state.plan.details.get(id)) },
      });
    }
    state.planTimeline.setGroups(new vis.DataSet(b.groups));
    state.planTimeline.setItems(new vis.DataSet(b.items));
    const s = Date.parse(p.start || p.gantt.from);
    const e = Date.parse(p.end || p.gantt.to);
    if (s && e && e > s) {
      const pad = (e - s) * 0.15;
      state.planTimeline.setWindow(new Date(s - pad), new Date(e + pad), { animation: false });
    } else {
      state.planTimeline.fit({ animation: false });
    }
  }
}

async function doPlan(ev) {
  ev.preventDefault();
  $('plan-error').textContent = '';
  $('apply-result').textContent = '';
  $('plan-apply').hidden = true;
  try {
    const p = await call('POST', '/plan', planBody().body);
    state.lastPlan = p;
    drawPlan(p);
    $('plan-apply').hidden = !p.fits;
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return logout('Your token is no longer accepted: ' + e.message);
    $('plan-result').innerHTML = '';
    $('plan-error').textContent = e instanceof APIError && e.status === 404 && !(e.body && e.body.error)
      ? 'This server cannot plan grids (no POST /api/v1/plan).'
      : errorText(e);
  }
}

async function doApply() {
  if (!state.lastPlan) return;
  $('plan-error').textContent = '';
  try {
    const body = planBody().body;
    body.plan = state.lastPlan.id;
    const g = await call('POST', '/grids', body);
    $('apply-result').className = 'ok';
    $('apply-result').textContent = `Grid ${g.name || state.lastPlan.grid} created${g.state ? ': ' + g.state : ''}.`;
    $('plan-apply').hidden = true;
  } catch (e) {
    $('apply-result').className = 'error';
    $('apply-result').textContent = errorText(e);
  }
}

// ---- wiring

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  const tok = $('token').value.trim();
  if (!tok) {
    $('login-error').textContent = 'Paste a token first.';
    return;
  }
  if (await checkToken(tok, true)) {
    $('token').value = '';
    if (location.hash === '#/overview') route();
    else location.hash = '#/overview';
  }
});
$('logout').addEventListener('click', () => logout(''));
$('plan-form').addEventListener('submit', doPlan);
$('plan-apply').addEventListener('click', doApply);
window.addEventListener('hashchange', route);
route();
