// The dashboard: a page per hash route (#/login, #/overview, #/calendar,
// #/utilization, #/plan), data from the API, refreshed on the server's
// change events.
import { call, token, setToken, clearToken, errorText, streamEvents, APIError } from './api.js';
import { build, utilization, bytes, fmtBytes, fmtCPU, fmtTime, esc } from './gantt.js';

const $ = (id) => document.getElementById(id);
const vis = window.vis;

// The calendar shown: from a day back to two weeks ahead (the chart
// opens on a day around now; zoom and pan reach the rest).
const calFrom = '-24h';
const calTo = '336h';

const state = {
  who: null,
  route: '',
  stopEvents: null,
  dirty: new Set(),
  debounce: 0,
  timeline: null,
  groups: null,
  items: null,
  model: [],
  graph: null,
  planTimeline: null,
  plan: null,
  rendered: false,
};

// window.vgrid lets tests and the benchmark read what the page drew.
window.vgrid = {
  timelineItems: () => state.model.slice(),
  timeline: () => state.timeline,
  fit: () => state.timeline && state.timeline.fit({ animation: false }),
  planItems: () => (state.plan ? state.plan.model.slice() : []),
  plan: () => state.lastPlan || null,
  live: () => $('live').classList.contains('on'),
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
    else if (page === 'calendar') await loadCalendar();
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

function markDirty(kind) {
  state.dirty.add(kind);
  clearTimeout(state.debounce);
  state.debounce = setTimeout(() => {
    const kinds = state.dirty;
    state.dirty = new Set();
    const page = state.route;
    const want = affects[page];
    if (!want) return;
    if (kinds.has('*') || want.some((k) => kinds.has(k))) {
      window.vgrid.refreshes++;
      refresh(page);
    }
  }, 200);
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

async function fetchCalendar() {
  return call('GET', `/calendar?format=json&from=${encodeURIComponent(calFrom)}&to=${encodeURIComponent(calTo)}`);
}

function ensureTimeline() {
  if (state.timeline) return;
  state.groups = new vis.DataSet();
  state.items = new vis.DataSet();
  const now = Date.now();
  state.timeline = new vis.Timeline($('gantt'), state.items, state.groups, {
    stack: true, showCurrentTime: true, zoomKey: 'ctrlKey', orientation: 'top',
    start: new Date(now - 3 * 3600e3), end: new Date(now + 21 * 3600e3),
    maxHeight: '75vh', verticalScroll: true, horizontalScroll: false,
    tooltip: { followMouse: true, overflowMethod: 'cap' },
    groupOrder: 'id', selectable: true, multiselect: false,
    margin: { item: { horizontal: 0, vertical: 2 } },
  });
  state.timeline.on('changed', () => {
    if (!state.rendered && state.items.length > 0) {
      state.rendered = true;
      performance.mark('gantt-rendered');
    }
  });
  $('cal-fit').addEventListener('click', () => state.timeline.fit());
  $('cal-now').addEventListener('click', () => state.timeline.moveTo(new Date()));
}

// syncDataSet makes ds hold exactly items: updates, adds, removes by ID.
function syncDataSet(ds, items) {
  const keep = new Set(items.map((i) => i.id));
  const gone = ds.getIds().filter((id) => !keep.has(id));
  if (gone.length) ds.remove(gone);
  ds.update(items);
}

async function loadCalendar() {
  const cal = await fetchCalendar();
  performance.mark('gantt-data');
  ensureTimeline();
  const b = build(cal);
  syncDataSet(state.groups, b.groups);
  syncDataSet(state.items, b.items);
  state.model = b.model;
  const leases = new Set(b.model.filter((m) => !m.masked).map((m) => m.lease));
  $('cal-status').textContent = `${b.model.length} bars of ${leases.size} leases on ${b.groups.length} hosts · revision ${cal.revision} · ${fmtTime(cal.from)} – ${fmtTime(cal.to)}`;
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
