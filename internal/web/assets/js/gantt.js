// Turning the API's calendar (api.Calendar: rows of bars per host) into
// vis-timeline groups and items, and into utilization series.

// hueClass picks one of 24 hue classes (app.css) for a project by a
// stable hash (FNV-1a), so a project keeps its colour across pages and
// reloads.
export function hueClass(project) {
  let h = 0x811c9dc5;
  for (let i = 0; i < project.length; i++) {
    h ^= project.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return 'p-h' + (h % 24);
}

const units = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

// bytes reads a model.ByteSize as the API writes it ("512Mi", "2Gi",
// "1234"); 0 for anything else.
export function bytes(v) {
  if (typeof v === 'number') return v;
  const m = /^([0-9.]+)\s*([KMGT]i?)?$/.exec(String(v || '').trim());
  if (!m) return 0;
  return parseFloat(m[1]) * (m[2] ? units[m[2]] : 1);
}

export function fmtBytes(n) {
  const u = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (Math.round(n * 10) / 10) + u[i];
}

export function fmtCPU(milli) { return (Math.round(milli / 100) / 10) + ' cpu'; }

export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  return isNaN(d) ? '' : d.toLocaleString();
}

export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// tooltipLines are a bar's details, one a line.
function tooltipLines(b, host) {
  const lines = [];
  if (b.masked) {
    lines.push('another project');
  } else {
    lines.push(`lease ${b.lease}`);
    if (b.project) lines.push(`project ${b.project}`);
    if (b.kind) lines.push(`kind ${b.kind}`);
    if (b.state) lines.push(`state ${b.state}`);
    if (b.members && b.members.length) lines.push(`members ${b.members.join(', ')}`);
  }
  lines.push(`host ${host}`);
  const r = b.resources || {};
  lines.push(`${fmtCPU(r.millicpu || 0)}, ${fmtBytes(bytes(r.memory))} memory`);
  if (b.stage_from) lines.push(`staging from ${fmtTime(b.stage_from)}`);
  lines.push(`held ${fmtTime(b.from)} – ${fmtTime(b.to)}`);
  lines.push(`runs ${fmtTime(b.run_from)} – ${fmtTime(b.run_to)}`);
  if (b.suspended) lines.push('suspended');
  if (b.migrating) lines.push('migrating');
  if (b.planned) lines.push('planned (not booked)');
  return lines;
}

// tooltip makes vis-timeline's tooltip.template: the details of the bar
// hovered (details(id) gives {bar, host}, from build), built then, one at
// a time, rather than a string per bar at load, as text in an element
// (no HTML parsing). Staging bands have none.
export function tooltip(details) {
  return (item) => {
    const d = item && details(item.id);
    if (!d) return '';
    const el = document.createElement('div');
    el.textContent = tooltipLines(d.bar, d.host).join('\n');
    return el;
  };
}

// build returns the groups (one per host) and items (one per bar, and a
// background item per staging window) of a calendar, plus a plain model
// of the bars for tests and tools. Item IDs are stable across refreshes
// (host, lease, times), so a DataSet update moves nothing needlessly.
// details maps each bar item's ID to its bar and host, for its tooltip.
export function build(cal, prefix = '') {
  const caps = new Map((cal.hosts || []).map((h) => [h.name, h.capacity || {}]));
  const groups = [];
  const items = [];
  const model = [];
  const details = new Map();
  const seen = new Map();
  for (const row of cal.rows || []) {
    const cap = caps.get(row.host) || {};
    groups.push({
      id: row.host,
      content: `${esc(row.host)} <span class="cap">${esc(fmtCPU(cap.millicpu || 0))} · ${esc(fmtBytes(bytes(cap.memory)))}</span>`,
      className: row.removed ? 'removed' : '',
    });
    for (const b of row.bars || []) {
      let id = `${prefix}${row.host}|${b.lease}|${b.from}|${b.to}`;
      const n = seen.get(id) || 0;
      seen.set(id, n + 1);
      if (n) id += '|' + n;
      const cls = ['bar'];
      if (b.masked) cls.push('masked');
      else cls.push(hueClass(b.project || ''));
      if (b.kind) cls.push('kind-' + b.kind);
      if (b.suspended) cls.push('suspended');
      if (b.migrating) cls.push('migrating');
      if (b.planned) cls.push('planned');
      const label = b.masked ? 'other project' : b.lease;
      // Dates, not strings: vis-timeline parses strings with moment.js,
      // which showed in the page's profile.
      items.push({
        id, group: row.host, start: new Date(Date.parse(b.from)), end: new Date(Date.parse(b.to)), type: 'range',
        content: esc(label), className: cls.join(' '),
      });
      details.set(id, { bar: b, host: row.host });
      model.push({ id, host: row.host, lease: b.lease, project: b.project || '', masked: !!b.masked,
        planned: !!b.planned, kind: b.kind || '', from: b.from, to: b.to });
      if (b.stage_from) {
        items.push({ id: id + '|stage', group: row.host, start: new Date(Date.parse(b.stage_from)), end: new Date(Date.parse(b.from)),
          type: 'background', className: 'stage' });
      }
    }
  }
  return { groups, items, model, details };
}

// utilization sums the bars' resources over time and divides by the
// hosts' capacity: two step series (percent of CPU and of memory
// booked) over [cal.from, cal.to], as Graph2d points.
export function utilization(cal) {
  let cpuCap = 0;
  let memCap = 0;
  for (const h of cal.hosts || []) {
    if (h.removed) continue;
    cpuCap += (h.capacity && h.capacity.millicpu) || 0;
    memCap += bytes(h.capacity && h.capacity.memory);
  }
  const from = Date.parse(cal.from);
  const to = Date.parse(cal.to);
  const deltas = new Map();
  const add = (t, c, m) => {
    const d = deltas.get(t) || [0, 0];
    d[0] += c;
    d[1] += m;
    deltas.set(t, d);
  };
  for (const row of cal.rows || []) {
    for (const b of row.bars || []) {
      const r = b.resources || {};
      const c = r.millicpu || 0;
      const m = bytes(r.memory);
      add(Math.max(from, Date.parse(b.from)), c, m);
      add(Math.min(to, Date.parse(b.to)), -c, -m);
    }
  }
  add(from, 0, 0);
  add(to, 0, 0);
  const times = [...deltas.keys()].sort((a, b) => a - b);
  const pct = (v, cap) => (cap > 0 ? Math.round((1000 * v) / cap) / 10 : 0);
  const points = [];
  let cpu = 0;
  let mem = 0;
  let peakCPU = 0;
  let peakMem = 0;
  times.forEach((t, i) => {
    const x = new Date(t);
    if (i > 0) {
      points.push({ x, y: pct(cpu, cpuCap), group: 'cpu' }, { x, y: pct(mem, memCap), group: 'mem' });
    }
    const d = deltas.get(t);
    cpu += d[0];
    mem += d[1];
    peakCPU = Math.max(peakCPU, cpu);
    peakMem = Math.max(peakMem, mem);
    points.push({ x, y: pct(cpu, cpuCap), group: 'cpu' }, { x, y: pct(mem, memCap), group: 'mem' });
  });
  return { points, cpuCap, memCap, peakCPU: pct(peakCPU, cpuCap), peakMem: pct(peakMem, memCap) };
}
