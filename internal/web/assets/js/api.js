// The API client of the dashboard: the token (this tab's session
// storage), JSON calls with the server's errors kept as it wrote them,
// and the server-sent event stream read through fetch (EventSource
// cannot send an Authorization header, and a token must never go into
// a URL).

const KEY = 'vgrid.token';

export function token() { return sessionStorage.getItem(KEY) || ''; }
export function setToken(t) { sessionStorage.setItem(KEY, t); }
export function clearToken() { sessionStorage.removeItem(KEY); }

// APIError carries the status and the server's error body ({error:
// {code, message, fields}}, internal/server/errors.go).
export class APIError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// call sends one request under /api/v1 and returns the decoded answer.
export async function call(method, path, body, tok = token()) {
  const headers = { Authorization: 'Bearer ' + tok, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch('/api/v1' + path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const msg = (data && data.error && data.error.message) || text || res.statusText;
    throw new APIError(res.status, data, msg);
  }
  return data;
}

// errorText is an error as the user should read it: the server's message
// verbatim, then each bad field with its reason.
export function errorText(err) {
  if (!(err instanceof APIError)) return String(err && err.message || err);
  let s = err.message;
  const e = err.body && err.body.error;
  if (e && Array.isArray(e.fields)) {
    for (const f of e.fields) s += `\n  ${f.field}: ${f.reason}`;
  }
  if (e && Array.isArray(e.shortfalls)) {
    for (const f of e.shortfalls) s += `\n  short of ${f.resource}${f.host ? ' on ' + f.host : ''}: requested ${f.requested}, free ${f.free}`;
  }
  return s;
}

// streamEvents follows GET /api/v1/events until stop() is called,
// reconnecting with a capped exponential backoff. onOpen runs on every
// (re)connection: what changed while it was down was not streamed, so
// the page reads everything again. onEvent gets each change (api.Event);
// onLive(true|false) says whether the stream is up; on401 runs when the
// token is refused.
export function streamEvents({ onOpen, onEvent, onLive, on401 }) {
  const ctl = new AbortController();
  let stopped = false;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  (async () => {
    let backoff = 500;
    while (!stopped) {
      try {
        const res = await fetch('/api/v1/events', {
          headers: { Authorization: 'Bearer ' + token(), Accept: 'text/event-stream' },
          cache: 'no-store', signal: ctl.signal,
        });
        if (res.status === 401) { onLive(false); on401(); return; }
        if (!res.ok || !res.body) throw new Error('events: HTTP ' + res.status);
        backoff = 500;
        onLive(true);
        onOpen();
        await readStream(res.body, onEvent);
      } catch (e) {
        if (stopped) return;
        // The stream broke (server restarted, network): try again.
      }
      onLive(false);
      if (stopped) return;
      await sleep(backoff + Math.random() * backoff / 2);
      backoff = Math.min(backoff * 2, 30000);
    }
  })();
  return () => { stopped = true; ctl.abort(); onLive(false); };
}

// readStream parses text/event-stream: blocks separated by a blank line,
// "event:" and "data:" fields, ":" comments (the heartbeat).
async function readStream(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'event') type = val;
        else if (field === 'data') data.push(val);
      }
      if (type === 'change' && data.length) {
        try { onEvent(JSON.parse(data.join('\n'))); } catch { /* not ours */ }
      }
    }
  }
}
