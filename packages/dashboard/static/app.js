// The dashboard page: hash routes rendered from the handler's JSON API, updated from its event stream.
// Every value is put in the page as text (textContent), never as HTML: job data is untrusted.

const main = document.getElementById('main');
const STATES = ['waiting', 'delayed', 'active', 'completed', 'dead'];
const PAGE = 25;
let config = { readOnly: true, limiters: [] };
/** What the current view does with a pushed update; replaced on every navigation. */
let onUpdate = () => {};

/** An element with attributes and children; strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    // Through the CSSOM: the page's CSP refuses style attributes.
    else if (name === 'style') Object.assign(el.style, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  el.append(...nodes(children));
  return el;
}

/** Children as nodes: nested arrays flattened, nothing for null, undefined and false, text for the rest. */
function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

/** Shows a view in place of the current one. */
function view(...children) {
  main.replaceChildren(...nodes(children));
}

async function api(path, options = {}) {
  const res = await fetch(`api/${path}`, options);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`);
  return body;
}

/** Runs an action (a POST with the header that proves it comes from this page), then re-renders. */
async function act(path, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    await api(path, { method: 'POST', headers: { 'x-cyredis-dashboard': '1' } });
  } catch (err) {
    window.alert(err.message);
  }
  await render();
}

const enc = encodeURIComponent;
const time = (ms) => (ms === undefined || ms === null ? '—' : new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC'));
const show = (value) => (value === undefined ? '—' : typeof value === 'string' ? value : JSON.stringify(value, null, 2));
const countOf = (counts, state) =>
  ({ waiting: counts.waiting, delayed: counts.delayed + counts.failed, active: counts.processing, completed: counts.completed, dead: counts.dead })[state];

function spark(values) {
  const max = Math.max(1, ...values);
  return h('span', { class: 'spark', title: `${values.join(', ')} per minute` },
    values.map((v) => h('span', { style: { height: `${Math.max(1, Math.round((v / max) * 24))}px` } })));
}

function actionButton(label, path, options = {}) {
  if (config.readOnly) return null;
  return h('button', { class: options.danger ? 'danger' : undefined, 'data-action': label, onclick: () => act(path, options.confirm) }, label);
}

function countsCells(queue) {
  return ['waiting', 'delayed', 'active', 'completed', 'dead'].map((state) =>
    h('td', { class: 'num', 'data-testid': `count-${queue.name}-${state}` }, h('a', { href: `#/queue/${enc(queue.name)}?state=${state}` }, countOf(queue.counts, state))));
}

async function queuesView() {
  const queues = await api('queues');
  const rows = new Map();
  const row = (q) =>
    h('tr', { 'data-queue': q.name },
      h('td', {}, h('a', { href: `#/queue/${enc(q.name)}` }, q.name), ' ', q.paused ? h('span', { class: 'badge paused' }, 'paused') : null),
      countsCells(q),
      h('td', {}, spark(q.throughput.completed), ' ', h('span', { class: 'muted', 'data-testid': `rate-${q.name}` }, `${q.throughput.completed.at(-1)}/min`)));
  const body = h('tbody', {}, queues.map((q) => {
    const tr = row(q);
    rows.set(q.name, tr);
    return tr;
  }));
  view(
    h('h1', {}, 'Queues'),
    queues.length === 0 ? h('p', { class: 'muted' }, 'No queues to show.') : h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Queue'), STATES.map((s) => h('th', { class: 'num' }, s)), h('th', {}, 'Completed per minute (15 min)'))),
      body));
  onUpdate = (type, data) => {
    if (type !== 'counts' || !rows.has(data.queue)) return;
    const tr = row({ name: data.queue, ...data });
    rows.get(data.queue).replaceWith(tr);
    rows.set(data.queue, tr);
  };
}

async function queueView(name, params) {
  const state = STATES.includes(params.get('state')) ? params.get('state') : 'waiting';
  const page = Math.max(0, Number(params.get('page')) || 0);
  const list = await api(`queues/${enc(name)}/jobs?state=${state}&offset=${page * PAGE}&limit=${PAGE}`);
  const total = countOf(list.counts, state);
  const link = (p) => `#/queue/${enc(name)}?state=${state}&page=${p}`;
  const search = h('form', { class: 'bar', onsubmit: (e) => {
    e.preventDefault();
    const id = e.target.elements.id.value.trim();
    if (id) location.hash = `#/queue/${enc(name)}/job/${enc(id)}`;
  } }, h('input', { name: 'id', placeholder: 'Find a job by id', 'aria-label': 'job id' }), h('button', { type: 'submit' }, 'Find'));
  const controls = config.readOnly ? null : h('div', { class: 'bar' },
    list.paused ? actionButton('Resume', `queues/${enc(name)}/resume`) : actionButton('Pause', `queues/${enc(name)}/pause`),
    state === 'completed' || state === 'dead'
      ? actionButton(`Clean ${state} older than 1 h`, `queues/${enc(name)}/clean?state=${state}&olderThanMs=3600000`, { danger: true, confirm: `Remove ${state} jobs older than an hour?` })
      : null);
  view(
    h('h1', {}, 'Queue ', name, ' ', list.paused ? h('span', { class: 'badge paused' }, 'paused') : null),
    h('div', { class: 'tabs' }, STATES.map((s) =>
      h('a', { href: `#/queue/${enc(name)}?state=${s}`, class: s === state ? 'current' : undefined, 'data-testid': `tab-${s}` }, `${s} (${countOf(list.counts, s)})`))),
    controls,
    search,
    list.jobs.length === 0 ? h('p', { class: 'muted' }, `No ${state} jobs on this page.`) : h('table', { 'data-testid': 'jobs' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Id'), h('th', {}, 'Data'), h('th', { class: 'num' }, 'Attempts'), h('th', {}, 'Created'), h('th', {}, 'Reason'))),
      h('tbody', {}, list.jobs.map((job) => h('tr', {},
        h('td', {}, h('a', { href: `#/queue/${enc(name)}/job/${enc(job.id)}` }, job.id)),
        h('td', {}, show(job.data).slice(0, 120)),
        h('td', { class: 'num' }, job.attempts),
        h('td', {}, time(job.createdAt)),
        h('td', { class: 'error' }, job.failedReason ?? ''))))),
    h('div', { class: 'bar' },
      page > 0 ? h('a', { href: link(page - 1) }, '← previous') : null,
      h('span', { class: 'muted' }, total === 0 ? '' : `${page * PAGE + 1}–${page * PAGE + list.jobs.length} of ${total}`),
      (page + 1) * PAGE < total ? h('a', { href: link(page + 1) }, 'next →') : null));
  onUpdate = (type, data) => {
    if (data.queue === name) refreshSoon();
  };
}

async function jobView(name, id) {
  let detail;
  try {
    detail = await api(`queues/${enc(name)}/jobs/${enc(id)}`);
  } catch (err) {
    view(h('h1', {}, 'Job ', id), h('p', { class: 'error' }, err.message), h('a', { href: `#/queue/${enc(name)}` }, `back to ${name}`));
    onUpdate = (type, data) => {
      if (type === 'job' && data.queue === name && data.jobId === id) refreshSoon();
    };
    return;
  }
  const { job, logs } = detail;
  const base = `queues/${enc(name)}/jobs/${enc(id)}`;
  const percent = typeof job.progress === 'number' ? job.progress : undefined;
  view(
    h('p', {}, h('a', { href: `#/queue/${enc(name)}?state=${job.state}` }, `← ${name}`)),
    h('h1', {}, 'Job ', id, ' ', h('span', { class: `badge ${job.state}`, 'data-testid': 'job-state' }, job.state)),
    h('div', { class: 'bar' },
      job.state === 'dead' ? actionButton('Retry', `${base}/retry`) : null,
      job.state === 'delayed' ? actionButton('Promote', `${base}/promote`) : null,
      job.state !== 'active' ? actionButton('Remove', `${base}/remove`, { danger: true, confirm: `Remove job ${id}?` }) : null),
    h('dl', {},
      h('dt', {}, 'Attempts'), h('dd', {}, `${job.attempts} of ${job.maxRetries + 1}`),
      h('dt', {}, 'Priority'), h('dd', {}, job.priority),
      h('dt', {}, 'Progress'), h('dd', {}, percent === undefined ? show(job.progress) : [h('span', { class: 'progress' }, h('span', { style: { width: `${percent}%` } })), ` ${percent}%`]),
      h('dt', {}, 'Created'), h('dd', {}, time(job.createdAt)),
      h('dt', {}, 'Processed'), h('dd', {}, time(job.processedAt)),
      h('dt', {}, 'Finished'), h('dd', {}, time(job.finishedAt)),
      h('dt', {}, 'Ready at'), h('dd', {}, time(job.readyAt))),
    h('h2', {}, 'Data'), h('pre', { 'data-testid': 'job-data' }, show(job.data)),
    job.failedReason === undefined ? null : [h('h2', {}, 'Error'), h('pre', { class: 'error', 'data-testid': 'job-error' }, job.failedReason)],
    job.returnValue === undefined ? null : [h('h2', {}, 'Return value'), h('pre', {}, show(job.returnValue))],
    h('h2', {}, `Logs (${logs.length})`), logs.length === 0 ? h('p', { class: 'muted' }, 'No log lines.') : h('pre', { 'data-testid': 'job-logs' }, logs.join('\n')));
  onUpdate = (type, data) => {
    if (type === 'job' && data.queue === name && data.jobId === id) refreshSoon();
  };
}

async function locksView(params) {
  const match = params.get('match') ?? '';
  const cursor = params.get('cursor') ?? '';
  const page = await api(`locks?match=${enc(match)}&cursor=${enc(cursor)}`);
  const form = h('form', { class: 'bar', onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/locks?match=${enc(e.target.elements.match.value.trim())}`;
  } },
  h('input', { name: 'match', value: match, placeholder: 'names matching, e.g. orders:*', 'aria-label': 'match' }),
  h('button', { type: 'submit' }, 'Filter'),
  h('button', { type: 'button', onclick: () => void render() }, 'Refresh'));
  view(
    h('h1', {}, 'Held locks'),
    form,
    page.locks.length === 0 ? h('p', { class: 'muted' }, 'No lock is held.') : h('table', { 'data-testid': 'locks' },
      h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Owner', 'Holders', 'TTL ms', 'Fencing token'].map((c) => h('th', {}, c)))),
      h('tbody', {}, page.locks.map((l) => h('tr', { 'data-lock': l.resource },
        h('td', {}, l.resource),
        h('td', {}, l.kind),
        h('td', {}, l.owner ?? l.holders.map((x) => `${x.owner}${x.mode ? ` (${x.mode})` : ''}`).join(', ')),
        h('td', { class: 'num' }, l.holders.reduce((n, x) => n + x.count, 0)),
        h('td', { class: 'num' }, l.ttlMs),
        h('td', { class: 'num' }, l.fencingToken))))),
    page.cursor ? h('p', {}, h('a', { href: `#/locks?match=${enc(match)}&cursor=${enc(page.cursor)}` }, 'next page →')) : null);
}

async function cachesView() {
  const caches = await api('caches');
  view(
    h('h1', {}, 'Caches'),
    caches.length === 0 ? h('p', { class: 'muted' }, 'No cache used in the last day.') : h('table', {},
      h('thead', {}, h('tr', {}, ['Cache', 'Hit rate', 'Hits', 'Misses', 'Sets', 'Evictions', 'Entries'].map((c, i) => h('th', { class: i ? 'num' : undefined }, c)))),
      h('tbody', {}, caches.map((c) => h('tr', { 'data-cache': c.name },
        h('td', {}, c.name),
        h('td', { class: 'num', 'data-testid': `hitrate-${c.name}` }, `${(c.hitRate * 100).toFixed(1)} %`),
        [c.hits, c.misses, c.sets, c.evictions, c.size].map((n) => h('td', { class: 'num' }, n)))))));
}

async function limitsView(params) {
  const limiter = params.get('limiter') ?? config.limiters[0];
  const id = params.get('id') ?? '';
  const form = h('form', { class: 'bar', onsubmit: (e) => {
    e.preventDefault();
    const f = e.target.elements;
    location.hash = `#/limits?limiter=${enc(f.limiter.value)}&id=${enc(f.id.value.trim())}`;
  } },
  h('select', { name: 'limiter', 'aria-label': 'limiter' }, config.limiters.map((l) => h('option', { value: l, selected: l === limiter }, l))),
  h('input', { name: 'id', value: id, placeholder: 'id (user, IP, key…)', 'aria-label': 'id' }),
  h('button', { type: 'submit' }, 'Look up'));
  const parts = [h('h1', {}, 'Rate limits'), config.limiters.length === 0 ? h('p', { class: 'muted' }, 'No rate limiter to show: none is configured, and no named limiter was used under this prefix within a day.') : form];
  if (limiter && id) {
    const usage = await api(`limiters/${enc(limiter)}/usage?id=${enc(id)}`);
    parts.push(
      h('h2', {}, `${id} on ${limiter}: `, h('span', { class: usage.next.allowed ? 'badge completed' : 'badge dead', 'data-testid': 'limit-next' }, usage.next.allowed ? 'would be allowed' : 'would be refused')),
      h('table', { 'data-testid': 'usage' },
        h('thead', {}, h('tr', {}, ['Rule', 'Used', 'Remaining', 'Limit', 'Window ms', 'Full again in ms'].map((c) => h('th', {}, c)))),
        h('tbody', {}, usage.rules.map((r) => h('tr', {}, [r.rule, r.used, r.remaining, r.limit, r.windowMs, r.resetMs].map((v) => h('td', { class: 'num' }, v)))))));
  }
  if (limiter) {
    const refusals = await api(`limiters/${enc(limiter)}/refusals`);
    parts.push(h('h2', {}, 'Recently refused'), refusals === null
      ? h('p', { class: 'muted' }, 'This limiter does not record refusals (recordRefusals).')
      : refusals.length === 0 ? h('p', { class: 'muted' }, 'None.') : h('ul', {}, refusals.map((r) => h('li', {}, r.id, ' ', h('span', { class: 'muted' }, time(r.refusedAtMs))))));
  }
  view(parts);
}

let refreshTimer;
/** Re-renders the current view once a burst of pushed updates settles (at most a few times a second). */
function refreshSoon() {
  refreshTimer ??= setTimeout(() => {
    refreshTimer = undefined;
    void render();
  }, 300);
}

async function render() {
  // Updates pushed while the view loads may describe changes its data predates: hold them, then hand them to
  // the new view's handler, so a change that lands mid-load still refreshes the page.
  const held = [];
  const holding = (type, data) => held.push([type, data]);
  onUpdate = holding;
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === 'queue' && parts[2] === 'job' && parts.length === 4) await jobView(parts[1], parts[3]);
    else if (parts[0] === 'queue' && parts.length === 2) await queueView(parts[1], params);
    else if (parts[0] === 'locks') await locksView(params);
    else if (parts[0] === 'caches') await cachesView();
    else if (parts[0] === 'limits') await limitsView(params);
    else await queuesView();
  } catch (err) {
    view(h('p', { class: 'error', role: 'alert' }, err.message));
  }
  if (onUpdate === holding) onUpdate = () => {};
  for (const [type, data] of held) onUpdate(type, data);
  document.body.dataset.rendered = location.hash;
}

function connect() {
  const live = document.getElementById('live');
  const events = new EventSource('api/events');
  events.addEventListener('open', () => {
    live.textContent = 'live';
    live.classList.add('on');
  });
  events.addEventListener('error', () => {
    live.textContent = 'reconnecting…';
    live.classList.remove('on');
  });
  for (const type of ['counts', 'job']) events.addEventListener(type, (e) => onUpdate(type, JSON.parse(e.data)));
}

config = await api('config');
window.addEventListener('hashchange', () => void render());
connect();
await render();
