// sluice's web view: the events the dashboard received, live. Plain JavaScript, no build
// step. Event text is untrusted: it only ever reaches the page as textContent.
'use strict';

(function () {
  const ROW = 22; // px, as --row in app.css
  const TOOLS_SHOWN = 1000;
  const PULSE_KEEP = 5 * 60; // seconds

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get('token') || '';

  // ---- state ----------------------------------------------------------------------------
  let epoch = null;
  let lastSeq = 0;
  const events = []; // every event received, in seq order
  let shown = []; // indices into events that pass the filters
  const sessions = new Map(); // id -> colour
  const types = new Set();
  const tools = new Set();
  const calls = new Map(); // tool_use_id -> call
  const callOrder = []; // calls in order of their first event
  const pulse = new Map(); // second -> Map(session -> count)
  const filter = { session: params.get('session') || '', type: params.get('type') || '', tool: params.get('tool') || '' };
  let view = params.get('view') === 'tools' ? 'tools' : 'timeline';
  let windowMinutes = [1, 3, 5].includes(Number(params.get('window'))) ? Number(params.get('window')) : 1;
  let follow = true; // stick to the bottom until the user scrolls up
  let selected = null; // seq of the event in the detail pane
  let pending = []; // events received since the last frame
  let historyDone = false;
  let dirty = { rows: true, tools: true, pulse: true, options: true };

  // ---- reading an event -----------------------------------------------------------------
  const payload = (e) => (e.data && typeof e.data === 'object' ? e.data : {});
  const inner = (e) => {
    const d = payload(e).data;
    return d && typeof d === 'object' ? d : {};
  };
  const str = (v) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
  const sessionOf = (e) => str(inner(e).session_id);
  // A Task's PreToolUse is sent twice, the second time as a subagent_start.
  const typeOf = (e) => (payload(e).subtype === 'subagent_start' ? 'SubagentStart' : '') ||
    str(inner(e).hook_event_name) || str(payload(e).subtype) || e.event;
  const toolOf = (e) => str(inner(e).tool_name);
  const timeOf = (e) => {
    const t = Date.parse(str(inner(e).timestamp) || str(payload(e).timestamp));
    return Number.isFinite(t) ? t : e.received;
  };

  function what(d) {
    const p = d.tool_parameters && typeof d.tool_parameters === 'object' ? d.tool_parameters : {};
    return str(d.command_preview || p.command || p.file_path || p.pattern || p.description || p.url || p.prompt);
  }

  function summary(e) {
    const d = inner(e);
    const sub = str(payload(e).subtype);
    if (sub === 'pre_tool' || sub === 'post_tool') {
      const status = d.success === false ? 'FAILED ' : '';
      return status + what(d);
    }
    if (d.prompt !== undefined) return str(d.prompt);
    if (d.message !== undefined) return str(d.message);
    if (d.last_assistant_message !== undefined) return str(d.last_assistant_message);
    if (d.reason !== undefined) return str(d.reason);
    if (d.source !== undefined) return str(d.source);
    if (d.tool_parameters && d.tool_parameters.subagent_type) return str(d.tool_parameters.subagent_type);
    return '';
  }

  // A stable colour per session: FNV-1a of its id, as a hue.
  function colour(id) {
    if (!id) return '#555c6b';
    let h = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) {
      h ^= id.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return 'hsl(' + ((h >>> 0) % 360) + ', 65%, 58%)';
  }

  const TYPE_COLOURS = {
    PreToolUse: '#58a6ff', PostToolUse: '#3fb950', PostToolUseFailure: '#f85149',
    UserPromptSubmit: '#d2a8ff', Stop: '#8a93a6', SubagentStop: '#8a93a6',
    Notification: '#d29922', SessionStart: '#39c5cf', SessionEnd: '#39c5cf',
  };
  const typeColour = (t) => TYPE_COLOURS[t] || '#444c5c';

  function clock(ms) {
    const d = new Date(ms);
    const p = (n, w) => String(n).padStart(w, '0');
    return p(d.getHours(), 2) + ':' + p(d.getMinutes(), 2) + ':' + p(d.getSeconds(), 2) + '.' + p(d.getMilliseconds(), 3);
  }

  function duration(ms) {
    if (ms === null || !Number.isFinite(ms)) return '';
    return ms < 10000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(1) + ' s';
  }

  // ---- taking events in -----------------------------------------------------------------
  function matches(e) {
    return (!filter.session || e.session === filter.session) &&
      (!filter.type || e.type === filter.type) &&
      (!filter.tool || e.tool === filter.tool);
  }

  function ingest(raw) {
    if (typeof raw !== 'object' || raw === null || typeof raw.seq !== 'number' || raw.seq <= lastSeq) return;
    lastSeq = raw.seq;
    const e = { seq: raw.seq, event: str(raw.event), data: raw.data, received: Date.now() };
    e.session = sessionOf(e);
    e.type = typeOf(e);
    e.tool = toolOf(e);
    e.time = timeOf(e);
    events.push(e);
    if (matches(e)) shown.push(events.length - 1);
    if (!sessions.has(e.session)) { sessions.set(e.session, colour(e.session)); dirty.options = true; }
    if (!types.has(e.type)) { types.add(e.type); dirty.options = true; }
    if (e.tool && !tools.has(e.tool)) { tools.add(e.tool); dirty.options = true; }
    pair(e);
    const second = Math.floor(e.time / 1000);
    let bucket = pulse.get(second);
    if (!bucket) { bucket = new Map(); pulse.set(second, bucket); }
    bucket.set(e.session, (bucket.get(e.session) || 0) + 1);
    dirty.rows = dirty.tools = dirty.pulse = true;
  }

  // Each PreToolUse with its PostToolUse (or failure), by tool_use_id.
  function pair(e) {
    const d = inner(e);
    const id = str(d.tool_use_id);
    if (!id) return;
    const sub = str(payload(e).subtype);
    let call = calls.get(id);
    if (!call) {
      call = { id, pre: null, post: null };
      calls.set(id, call);
      callOrder.push(call);
    }
    if (sub === 'pre_tool' || e.type === 'PreToolUse') call.pre = call.pre || e;
    else if (sub === 'post_tool' || e.type === 'PostToolUse' || e.type === 'PostToolUseFailure') call.post = e;
  }

  function callStatus(call) {
    if (!call.post) return { text: 'running', cls: 'run', ms: null };
    const d = inner(call.post);
    const failed = call.post.type === 'PostToolUseFailure' || d.success === false;
    let ms = typeof d.duration_ms === 'number' ? d.duration_ms : null;
    if (ms === null && call.pre) ms = call.post.time - call.pre.time;
    return { text: failed ? 'failed' : 'ok', cls: failed ? 'bad' : 'ok', ms };
  }

  // ---- the socket -----------------------------------------------------------------------
  function connect() {
    // A local dashboard comes back within seconds (a restart): retry soon, at most every 2 s.
    const socket = io({ transports: ['websocket'], query: { token }, reconnectionDelay: 250, reconnectionDelayMax: 2000 });
    const link = $('link');
    socket.on('connect', () => { performance.mark('connected'); link.textContent = 'live'; link.className = 'link up'; });
    socket.on('disconnect', () => { link.textContent = 'reconnecting'; link.className = 'link down'; });
    socket.on('connect_error', () => { link.textContent = 'cannot connect'; link.className = 'link down'; });
    socket.on('history', (chunk) => {
      if (!chunk || typeof chunk !== 'object') return;
      if (!historyDone && performance.getEntriesByName('history-first').length === 0) performance.mark('history-first');
      if (chunk.epoch !== epoch) {
        // Another dashboard (started afresh): its numbering starts over.
        if (epoch !== null) reset();
        epoch = chunk.epoch;
      }
      for (const e of Array.isArray(chunk.events) ? chunk.events : []) ingest(e);
      if (chunk.last && !historyDone) {
        historyDone = true;
        performance.mark('history-received');
        // Drawn in this frame; marked in the next, once this one is on screen.
        requestAnimationFrame(() => {
          frame();
          requestAnimationFrame(() => {
            performance.mark('history-painted');
            document.body.dataset.history = 'painted';
          });
        });
      }
    });
    socket.on('event', (e) => { pending.push(e); schedule(); });
    socket.on('stats', showStats);
  }

  function reset() {
    events.length = 0; shown = []; lastSeq = 0; calls.clear(); callOrder.length = 0; pulse.clear();
    dirty = { rows: true, tools: true, pulse: true, options: true };
  }

  let scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; frame(); });
  }

  // One frame: take in what arrived, then redraw only what changed.
  function frame() {
    if (pending.length) {
      const batch = pending;
      pending = [];
      for (const e of batch) ingest(e);
    }
    document.body.dataset.seq = String(lastSeq);
    showCounters();
    if (dirty.options) { dirty.options = false; fillOptions(); }
    if (view === 'timeline' && dirty.rows) { dirty.rows = false; renderRows(); }
    if (view === 'tools' && dirty.tools) { dirty.tools = false; renderTools(); }
    if (dirty.pulse && performance.now() - pulseDrawn >= 500) { dirty.pulse = false; drawPulse(); }
    setText($('shown'), shown.length + ' of ' + events.length + ' events shown');
  }

  // The dashboard's counters come every second; the events it numbered, and the sessions
  // among them, are known here at once.
  let stats = {};
  function showCounters() {
    const counts = {
      events: Math.max(Number(stats.events) || 0, lastSeq),
      sessions: Math.max(Number(stats.sessions) || 0, [...sessions.keys()].filter(Boolean).length),
      duplicates: Number(stats.duplicates) || 0,
      connections: Number(stats.connections) || 0,
    };
    for (const key of Object.keys(counts)) setText($('c-' + key), String(counts[key]));
  }

  function showStats(s) {
    if (!s || typeof s !== 'object') return;
    stats = s;
    showCounters();
    const box = $('relays');
    box.replaceChildren();
    for (const relay of Array.isArray(s.relays) ? s.relays : []) {
      if (!relay || typeof relay !== 'object') continue;
      const span = document.createElement('span');
      span.className = 'relay';
      const parts = [['breaker', relay.breaker], ['store', relay.store_depth], ['dead letters', relay.dead_letters]];
      span.append('relay');
      for (const [name, value] of parts) {
        if (value === undefined) continue;
        const b = document.createElement('b');
        b.textContent = str(value);
        if (name === 'breaker' && value !== 'closed') b.className = 'open';
        span.append(' ' + name + ' ', b);
      }
      box.append(span);
    }
  }

  // ---- filters and the URL --------------------------------------------------------------
  function fillOptions() {
    fill($('f-session'), [...sessions.keys()].filter(Boolean), filter.session, (s) => s.slice(0, 8));
    fill($('f-type'), [...types].sort(), filter.type, (t) => t);
    fill($('f-tool'), [...tools].sort(), filter.tool, (t) => t);
  }

  function fill(select, values, current, label) {
    const all = current && !values.includes(current) ? [...values, current] : values;
    if (select.options.length - 1 === all.length && select.value === current) return;
    const first = select.options[0];
    select.replaceChildren(first);
    for (const v of all) {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = label(v);
      if (select === $('f-session')) o.style.color = colour(v);
      select.append(o);
    }
    select.value = current;
  }

  function writeUrl() {
    const p = new URLSearchParams();
    p.set('token', token);
    if (filter.session) p.set('session', filter.session);
    if (filter.type) p.set('type', filter.type);
    if (filter.tool) p.set('tool', filter.tool);
    if (view !== 'timeline') p.set('view', view);
    if (windowMinutes !== 1) p.set('window', String(windowMinutes));
    history.replaceState(null, '', '?' + p.toString());
  }

  function refilter() {
    shown = [];
    for (let i = 0; i < events.length; i++) if (matches(events[i])) shown.push(i);
    follow = true;
    dirty.rows = dirty.tools = true;
    writeUrl();
    schedule();
  }

  for (const [key, id] of [['session', 'f-session'], ['type', 'f-type'], ['tool', 'f-tool']]) {
    $(id).addEventListener('change', (ev) => { filter[key] = ev.target.value; refilter(); });
  }
  $('f-clear').addEventListener('click', () => {
    filter.session = filter.type = filter.tool = '';
    dirty.options = true;
    fillOptions();
    refilter();
  });

  // ---- the timeline (virtualised: only the rows in sight exist) --------------------------
  const timeline = $('timeline');
  const spacer = $('spacer');

  // The rows in sight, by seq: kept from frame to frame, so that a frame only adds the
  // rows that scrolled in and drops those that scrolled out.
  let rendered = new Map();
  let renderedFilter = '';
  let scrolledTo = -1; // the scrollTop this page set last, to tell it from the user's

  function renderRows() {
    const height = shown.length * ROW;
    if (spacer.style.height !== height + 'px') spacer.style.height = height + 'px';
    const sight = timeline.clientHeight;
    if (follow) {
      const bottom = Math.max(0, height - sight);
      if (timeline.scrollTop !== bottom) { timeline.scrollTop = bottom; scrolledTo = timeline.scrollTop; }
    }
    const top = timeline.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW) - 5);
    const last = Math.min(shown.length, Math.ceil((top + sight) / ROW) + 5);
    const key = filter.session + '\u0000' + filter.type + '\u0000' + filter.tool + '\u0000' + selected;
    if (key !== renderedFilter) {
      // Other rows at the same places: start over.
      rendered = new Map();
      spacer.replaceChildren();
      renderedFilter = key;
    }
    const wanted = new Set();
    for (let i = first; i < last; i++) wanted.add(events[shown[i]].seq);
    for (const [seq, div] of rendered) {
      if (!wanted.has(seq)) { div.remove(); rendered.delete(seq); }
    }
    const added = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const e = events[shown[i]];
      if (!rendered.has(e.seq)) {
        const div = row(e, i);
        rendered.set(e.seq, div);
        added.append(div);
      }
    }
    spacer.append(added);
    $('follow').hidden = follow;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function cell(cls, text) {
    const span = document.createElement('span');
    span.className = cls;
    span.textContent = text;
    return span;
  }

  function row(e, i) {
    const div = document.createElement('div');
    div.className = e.seq === selected ? 'row sel' : 'row';
    div.style.top = i * ROW + 'px';
    div.dataset.seq = String(e.seq);
    const s1 = cell('stripe', '');
    s1.style.background = sessions.get(e.session) || colour(e.session);
    const s2 = cell('stripe', '');
    s2.style.background = typeColour(e.type);
    const sum = summary(e);
    const sumCell = cell(inner(e).success === false ? 'sum bad' : 'sum', sum.length > 300 ? sum.slice(0, 300) + '…' : sum);
    div.append(s1, s2, cell('time', clock(e.time)), cell('type', e.type), cell('tool', e.tool),
      cell('sess', e.session.slice(0, 8)), sumCell);
    return div;
  }

  timeline.addEventListener('scroll', () => {
    if (timeline.scrollTop === scrolledTo) return; // ours, already drawn
    scrolledTo = -1;
    follow = timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - ROW;
    dirty.rows = true;
    schedule();
  });
  $('follow').addEventListener('click', () => { follow = true; dirty.rows = true; schedule(); });
  spacer.addEventListener('click', (ev) => {
    const target = ev.target instanceof Element ? ev.target.closest('.row') : null;
    if (target) showDetail(Number(target.dataset.seq));
  });

  // ---- the whole payload ----------------------------------------------------------------
  function showDetail(seq) {
    const e = events.find((x) => x.seq === seq);
    if (!e) return;
    selected = seq;
    $('detail-title').textContent = '#' + seq + ' ' + e.type + (e.tool ? ' ' + e.tool : '');
    $('detail-body').textContent = JSON.stringify(e.data, null, 2);
    $('detail').hidden = false;
    dirty.rows = true;
    schedule();
  }
  $('detail-close').addEventListener('click', () => { $('detail').hidden = true; selected = null; dirty.rows = true; schedule(); });

  // ---- tools ----------------------------------------------------------------------------
  function renderTools() {
    const body = $('tools').tBodies[0];
    const list = callOrder.filter((c) => {
      const e = c.pre || c.post;
      return matches(e);
    });
    const rows = [];
    for (const call of list.slice(-TOOLS_SHOWN)) {
      const e = call.pre || call.post;
      const st = callStatus(call);
      const tr = document.createElement('tr');
      tr.dataset.toolUseId = call.id;
      const dot = document.createElement('span');
      dot.className = 'dot';
      dot.style.background = sessions.get(e.session) || colour(e.session);
      const sess = document.createElement('td');
      sess.append(dot, e.session.slice(0, 8));
      const status = cell(st.cls, st.text);
      const td = (cls, text) => { const c = document.createElement('td'); c.className = cls; c.textContent = text; return c; };
      const statusTd = document.createElement('td');
      statusTd.className = 'status';
      statusTd.append(status);
      const dur = td('num duration', duration(st.ms));
      if (st.ms !== null) dur.dataset.ms = String(st.ms);
      tr.append(td('time', clock(e.time)), sess, td('tool', e.tool), td('what', what(inner(e))), statusTd, dur);
      tr.addEventListener('click', () => showDetail((call.post || call.pre).seq));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  // ---- pulse: events per second, stacked by session ----------------------------------------
  const canvas = $('pulse');
  let pulseDrawn = -Infinity;
  function drawPulse() {
    pulseDrawn = performance.now();
    const now = Math.floor(Date.now() / 1000);
    for (const second of pulse.keys()) if (second < now - PULSE_KEEP) pulse.delete(second);
    const span = windowMinutes * 60;
    const width = canvas.clientWidth || 600;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(64 * ratio);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, 64);
    let max = 1;
    for (let s = now - span + 1; s <= now; s++) {
      const bucket = pulse.get(s);
      if (!bucket) continue;
      let total = 0;
      for (const n of bucket.values()) total += n;
      max = Math.max(max, total);
    }
    const bar = width / span;
    for (let s = now - span + 1; s <= now; s++) {
      const bucket = pulse.get(s);
      if (!bucket) continue;
      let y = 62;
      const x = (s - (now - span + 1)) * bar;
      for (const [session, n] of bucket) {
        if (filter.session && session !== filter.session) continue;
        const h = (n / max) * 58;
        ctx.fillStyle = sessions.get(session) || colour(session);
        ctx.fillRect(x, y - h, Math.max(1, bar - 1), h);
        y -= h;
      }
    }
    ctx.fillStyle = '#262b36';
    ctx.fillRect(0, 62, width, 1);
    $('pulse-max').textContent = 'peak ' + max + '/s over the last ' + windowMinutes + ' min';
  }
  setInterval(() => { dirty.pulse = true; schedule(); }, 1000);
  window.addEventListener('resize', () => { dirty.rows = dirty.pulse = true; schedule(); });

  for (const b of document.querySelectorAll('#windows button')) {
    b.addEventListener('click', () => {
      windowMinutes = Number(b.dataset.window);
      markOn('#windows button', 'window', String(windowMinutes));
      writeUrl();
      dirty.pulse = true;
      schedule();
    });
  }

  // ---- views ----------------------------------------------------------------------------
  function markOn(selector, key, value) {
    for (const b of document.querySelectorAll(selector)) b.classList.toggle('on', b.dataset[key] === value);
  }

  function showView(next) {
    view = next;
    $('timeline-view').hidden = view !== 'timeline';
    $('tools-view').hidden = view !== 'tools';
    markOn('#views button', 'view', view);
    dirty.rows = dirty.tools = true;
    schedule();
  }
  for (const b of document.querySelectorAll('#views button')) {
    b.addEventListener('click', () => { showView(b.dataset.view); writeUrl(); });
  }

  markOn('#windows button', 'window', String(windowMinutes));
  showView(view);
  fillOptions();
  if (typeof io !== 'function') {
    $('link').textContent = 'the Socket.IO client did not load';
  } else {
    connect();
  }
})();
