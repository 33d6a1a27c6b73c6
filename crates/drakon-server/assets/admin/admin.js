// The drakon admin page: a generic editor for every model in the schema.
//
// The models come from GET /admin/api/schema; rows are read and written through the `admin:<model>` routes over the
// WebSocket (the admin cookie makes that session an admin one), so every admin write publishes like any other. The
// current page is re-read (debounced) whenever a live subscription with the same filter reports a change, so edits
// from other browsers and from the protocol show up without a reload.
//
// Plain browser JavaScript, served as is: no build step, no framework. Data is only ever put into the page through
// text nodes and properties, never parsed as HTML.
'use strict';

(() => {
  /** Wait after a change notification before re-reading the page, so a burst of changes costs one read. */
  const REFRESH_DEBOUNCE_MS = 100;
  /** How often the lists of who is connected and who is viewing what are read again. */
  const CONNECTED_REFRESH_MS = 2000;
  /** How often to re-read the page when live updates are unavailable (e.g. a table too large for a snapshot). */
  const POLL_INTERVAL_MS = 5000;
  /** Longest cell text before it is cut (the full value stays in the tooltip). */
  const CELL_MAX_CHARS = 80;
  /** Text values longer than this are edited in a textarea. */
  const LONG_TEXT_CHARS = 120;

  const CONN_LABELS = { connecting: 'connecting…', open: 'connected', reconnecting: 'reconnecting…', closed: 'disconnected' };
  const OP_LABELS = {
    eq: '=', ne: '≠', lt: '<', lte: '≤', gt: '>', gte: '≥', in: 'in', contains: 'contains',
    icontains: 'contains (any case)', startswith: 'starts with', isnull: 'is null',
  };

  /** The operators the server accepts for a field type (mirrors `Op::allowed_on` in drakon-core). */
  function opsFor(type) {
    const ops = [];
    if (type !== 'json') ops.push('eq', 'ne');
    if (['id', 'int', 'float', 'text', 'datetime', 'ref'].includes(type)) ops.push('lt', 'lte', 'gt', 'gte');
    if (type === 'text') ops.push('contains', 'icontains', 'startswith');
    if (type !== 'json') ops.push('in');
    ops.push('isnull');
    return ops;
  }

  // ---------------------------------------------------------------------------------------------------- DOM helpers

  const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'open', 'indeterminate']);

  /** Creates an element; children are nodes or strings (always text). Properties are set after the children. */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    append(el, children);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'testid') el.dataset.testid = value;
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (PROPS.has(key)) el[key] = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
    return el;
  }

  function append(el, children) {
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      if (Array.isArray(child)) append(el, child);
      else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  const $ = (selector, root = document) => root.querySelector(selector);

  // -------------------------------------------------------------------------------------------------- value helpers

  /** `2026-11-27T10:00:00.123456Z` → `2026-11-27T10:00:00.123`, the value a datetime-local input shows (UTC). */
  function toInputDatetime(text) {
    if (typeof text !== 'string') return '';
    const m = /^(\d{4,}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::(\d{2})(?:\.(\d+))?)?/.exec(text);
    if (!m) return '';
    const fraction = (m[4] || '').slice(0, 3).replace(/0+$/, '');
    return `${m[1]}T${m[2]}:${m[3] || '00'}${fraction ? '.' + fraction.padEnd(3, '0') : ''}`;
  }

  /** A datetime-local value (read as UTC) → RFC 3339 with `Z`, or null when it does not look like one. */
  function fromInputDatetime(text) {
    const m = /^(\d{4,}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d+)?)?$/.exec(text.trim());
    if (!m) return null;
    return `${m[1]}T${m[2]}${m[3] || ':00'}Z`;
  }

  /** Reads one scalar typed by the field; returns {value} or {error}. */
  function parseScalar(field, text, { datetimeInput = false } = {}) {
    const raw = text.trim();
    if (raw === '' && field.type !== 'text') return { error: 'enter a value' };
    switch (field.type) {
      case 'id':
      case 'int':
      case 'ref': {
        const n = Number(raw);
        if (raw === '' || !Number.isSafeInteger(n)) return { error: `“${raw}” is not a whole number` };
        return { value: n };
      }
      case 'float': {
        const n = Number(raw);
        if (raw === '' || !Number.isFinite(n)) return { error: `“${raw}” is not a number` };
        return { value: n };
      }
      case 'bool':
        if (raw === 'true') return { value: true };
        if (raw === 'false') return { value: false };
        return { error: `“${raw}” is not true or false` };
      case 'datetime': {
        if (datetimeInput) {
          const v = fromInputDatetime(raw);
          return v ? { value: v } : { error: 'enter a date and time' };
        }
        // Typed by hand (an `in` list): the server accepts RFC 3339 and `YYYY-MM-DD HH:MM:SS` (read as UTC).
        return raw ? { value: raw } : { error: 'enter a datetime such as 2026-11-27T10:00:00Z' };
      }
      case 'json':
        try {
          return { value: JSON.parse(raw) };
        } catch (e) {
          return { error: `not valid JSON: ${e.message}` };
        }
      default:
        return { value: text };
    }
  }

  function truncate(text, max) {
    return text.length > max ? text.slice(0, max - 1) + '…' : text;
  }

  /** A human label for a row of `model`: its id and the first non-empty text field. */
  function rowLabel(model, row) {
    const text = model.fields.find((f) => f.type === 'text' && typeof row[f.name] === 'string' && row[f.name] !== '');
    return text ? `#${row.id} · ${truncate(row[text.name], 40)}` : `#${row.id}`;
  }

  function errorText(err) {
    if (!err) return 'unknown error';
    if (typeof err === 'string') return err;
    return err.message || String(err);
  }

  // ---------------------------------------------------------------------------------------------------------- state

  const state = {
    client: null,
    /** The presence rooms with members, as `/admin/api/presence` last said. */
    rooms: [],
    models: [],
    byName: new Map(),
    /** Per-model view settings, kept while switching models: {draft, applied, order, page}. */
    views: new Map(),
    current: null,
    rows: [],
    page: null,
    fetchSeq: 0,
    refreshTimer: 0,
    live: null,
    liveKey: '',
    liveOffs: [],
    pollTimer: 0,
    editor: null,
  };

  function viewOf(name) {
    let view = state.views.get(name);
    if (!view) {
      view = { draft: [], applied: {}, order: null, page: 1 };
      state.views.set(name, view);
    }
    return view;
  }

  const currentModel = () => state.byName.get(state.current);

  // ---------------------------------------------------------------------------------------------------- start-up

  async function start() {
    let schema;
    try {
      const response = await fetch('/admin/api/schema', { credentials: 'same-origin', cache: 'no-store' });
      if (response.status === 401) {
        location.assign('/admin');
        return;
      }
      if (!response.ok) throw new Error(`the schema request failed with HTTP ${response.status}`);
      schema = await response.json();
    } catch (e) {
      showFatal(`Could not load the schema: ${errorText(e)}`);
      return;
    }
    state.models = schema.models || [];
    for (const model of state.models) state.byName.set(model.name, model);
    renderSidebar();

    if (!window.drakon || typeof window.drakon.connect !== 'function') {
      setConnState('closed', 'no client');
      showFatal('The browser client /drakon.js did not load, so the admin cannot reach the server.');
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    state.client = window.drakon.connect(`${scheme}//${location.host}/data/websocket`);
    let previous = state.client.state;
    setConnState(previous);
    state.client.on('state', (next) => {
      setConnState(next);
      // Whatever happened while the socket was down (or a read that failed before it opened): read again.
      if (next === 'open' && previous !== 'open') scheduleRefresh();
      previous = next;
    });

    window.addEventListener('hashchange', routeFromHash);
    routeFromHash();
    refreshConnected();
    refreshViewing();
    setInterval(refreshConnected, CONNECTED_REFRESH_MS);
    setInterval(refreshViewing, CONNECTED_REFRESH_MS);
  }

  // ------------------------------------------------------------------------------------------------------ viewing

  // Who has which object (or channel) open, from the presence rooms of routes with `[presence]`: listed in the
  // sidebar, and said in the edit form of an object somebody else is looking at.
  async function refreshViewing() {
    const list = $('#viewing');
    try {
      const response = await fetch('/admin/api/presence', { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      state.rooms = (await response.json()).rooms;
    } catch (e) {
      list.replaceChildren(h('li', { class: 'muted' }, `unavailable: ${errorText(e)}`));
      return;
    }
    const items = state.rooms.map((room) => {
      const what = room.model !== undefined ? `${room.model} #${room.id}` : room.channel !== undefined ? `channel ${room.channel}` : room.room;
      const testid = room.model !== undefined ? `viewing-${room.model}-${room.id}` : `viewing-${room.room}`;
      return h('li', { testid, title: `${room.room} · ${room.connections} connections` },
        h('strong', {}, what), ` · ${memberText(room)}`);
    });
    if (!items.length) items.push(h('li', { class: 'muted' }, 'nothing'));
    list.replaceChildren(...items);
    showViewers();
  }

  /** "alice (editing), bob", and how many more a large room has. */
  function memberText(room) {
    const names = room.members.map((m) => (Object.keys(m.state || {}).length ? `${m.id} (${stateText(m.state)})` : m.id));
    const more = room.count - room.members.length;
    return names.join(', ') + (more > 0 ? ` and ${more} more` : '');
  }

  function stateText(memberState) {
    return Object.entries(memberState).map(([k, v]) => (v === true ? k : `${k} ${JSON.stringify(v)}`)).join(', ');
  }

  /** In the open edit form: who else has this object open, through any route. */
  function showViewers() {
    const dialog = state.editor;
    if (!dialog || !dialog.dataset.model) return;
    const note = $('[data-testid="editor-viewers"]', dialog);
    const rooms = (state.rooms || []).filter((r) => r.model === dialog.dataset.model && String(r.id) === dialog.dataset.id);
    const text = rooms.map(memberText).filter(Boolean).join('; ');
    note.hidden = !text;
    note.textContent = text ? `Open elsewhere: ${text}. Your changes reach them live.` : '';
  }

  // ---------------------------------------------------------------------------------------------------- connected

  // Who is connected to this node: each signed-in user with their connections, then admins and anonymous clients.
  async function refreshConnected() {
    const list = $('#connected');
    let connected;
    try {
      const response = await fetch('/admin/api/connected', { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      connected = await response.json();
    } catch (e) {
      list.replaceChildren(h('li', { class: 'muted' }, `unavailable: ${errorText(e)}`));
      return;
    }
    const times = (n) => (n === 1 ? '1 connection' : `${n} connections`);
    const items = connected.users.map((user) => {
      const name = (user.info && typeof user.info.name === 'string' && user.info.name) || user.id;
      const roles = user.roles.length ? ` (${user.roles.join(', ')})` : '';
      return h('li', { testid: `connected-user-${user.id}`, title: `id ${user.id}` },
        h('strong', {}, name), `${roles} · ${times(user.connections)}`);
    });
    if (connected.admins) items.push(h('li', { testid: 'connected-admins' }, `admin secret · ${times(connected.admins)}`));
    if (connected.anonymous) items.push(h('li', { testid: 'connected-anonymous' }, `anonymous · ${times(connected.anonymous)}`));
    if (!items.length) items.push(h('li', { class: 'muted' }, 'nobody'));
    list.replaceChildren(...items);
  }

  function routeFromHash() {
    const name = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
    if (state.byName.has(name)) selectModel(name);
    else if (state.models.length) selectModel(state.models[0].name, { replace: true });
    else $('#content').replaceChildren(h('p', { class: 'muted' }, 'The schema has no models.'));
  }

  function showFatal(message) {
    $('#content').replaceChildren(h('p', { class: 'banner banner-error', role: 'alert', testid: 'fatal-error' }, message));
  }

  function setConnState(value, label) {
    const el = $('[data-testid="connection-state"]');
    el.dataset.state = value;
    el.textContent = label || CONN_LABELS[value] || value;
  }

  // --------------------------------------------------------------------------------------------------------- sidebar

  function renderSidebar() {
    const items = state.models.map((model) =>
      h('li', null,
        h('a', {
          href: `#/${encodeURIComponent(model.name)}`,
          class: 'model-link',
          testid: `model-link-${model.name}`,
          'data-model': model.name,
        }, model.name)));
    $('#models').replaceChildren(...(items.length ? items : [h('li', { class: 'muted' }, 'no models')]));
  }

  function markActiveModel() {
    for (const link of document.querySelectorAll('.model-link')) {
      const active = link.dataset.model === state.current;
      link.classList.toggle('active', active);
      if (active) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  }

  // ------------------------------------------------------------------------------------------------------ model view

  function selectModel(name, { replace = false } = {}) {
    const hash = `#/${encodeURIComponent(name)}`;
    if (location.hash !== hash) {
      if (replace) history.replaceState(null, '', hash);
      else {
        location.hash = hash; // routeFromHash runs again through hashchange
        return;
      }
    }
    if (state.current === name && $('[data-testid="rows"]')) return;
    closeEditor();
    state.current = name;
    state.rows = [];
    state.page = null;
    document.title = `${name} · drakon admin`;
    markActiveModel();
    renderModelView();
    reload();
  }

  /** Re-reads the page now and makes sure the live subscription follows the applied filter. */
  function reload() {
    followLive();
    refresh();
  }

  function renderModelView() {
    const model = currentModel();
    const main = $('#content');
    main.replaceChildren(
      h('div', { class: 'view-head' },
        h('div', null,
          h('h1', { class: 'view-title' }, model.name),
          h('p', { class: 'view-sub muted' },
            h('span', { testid: 'row-count' }, ''), ' ',
            h('span', { class: 'live', testid: 'live-state', 'data-state': 'loading' }, ''))),
        h('button', { type: 'button', class: 'btn btn-primary', testid: 'new-row', onclick: () => openEditor(null) },
          `New ${model.name}`)),
      renderFilterBar(model),
      h('p', { class: 'banner banner-error', role: 'alert', testid: 'list-error', hidden: true }),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'rows' },
          h('thead', null, h('tr', null,
            model.fields.map((field) => renderHeader(model, field)),
            h('th', { class: 'actions-col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
          h('tbody', { testid: 'rows' }))),
      h('p', { class: 'empty muted', testid: 'empty', hidden: true }, 'No rows.'),
      h('nav', { class: 'pager', 'aria-label': 'Pages' },
        h('button', { type: 'button', class: 'btn', testid: 'prev-page', disabled: true, onclick: () => goToPage(-1) },
          '‹ Previous'),
        h('span', { class: 'page-info', testid: 'page-info' }, '…'),
        h('button', { type: 'button', class: 'btn', testid: 'next-page', disabled: true, onclick: () => goToPage(1) },
          'Next ›')));
  }

  function renderHeader(model, field) {
    const view = viewOf(model.name);
    const sort = view.order === field.name ? 'ascending' : view.order === `-${field.name}` ? 'descending' : 'none';
    const arrow = sort === 'ascending' ? '▲' : sort === 'descending' ? '▼' : '';
    const typeLabel = field.type === 'ref' ? `ref → ${field.ref}` : field.type;
    return h('th', { 'aria-sort': sort, class: `col-${field.type}` },
      h('button', {
        type: 'button',
        class: 'sort',
        testid: `order-${field.name}`,
        title: `Order by ${field.name}`,
        onclick: () => toggleOrder(field.name),
      },
      h('span', { class: 'col-name' }, field.name),
      h('span', { class: 'col-type' }, typeLabel),
      h('span', { class: 'sort-arrow', 'aria-hidden': 'true' }, arrow)));
  }

  function toggleOrder(fieldName) {
    const view = viewOf(state.current);
    view.order = view.order === fieldName ? `-${fieldName}` : fieldName;
    view.page = 1;
    const model = currentModel();
    const row = $('table.rows thead tr');
    row.replaceChildren(...model.fields.map((f) => renderHeader(model, f)), row.lastElementChild);
    refresh();
  }

  function goToPage(delta) {
    const view = viewOf(state.current);
    view.page = Math.max(1, view.page + delta);
    refresh();
  }

  // ------------------------------------------------------------------------------------------------------- reading

  function scheduleRefresh(delay = REFRESH_DEBOUNCE_MS) {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(refresh, delay);
  }

  async function refresh() {
    clearTimeout(state.refreshTimer);
    const model = currentModel();
    if (!model || !state.client) return;
    const view = viewOf(model.name);
    const seq = ++state.fetchSeq;
    const args = { ...view.applied, _page: view.page };
    if (view.order) args._order = view.order;
    try {
      const { data, context } = await state.client.request(model.route, 'get_list', args);
      if (seq !== state.fetchSeq) return;
      state.rows = Array.isArray(data) ? data : [];
      state.page = (context && context.client_context && context.client_context.page) || null;
      showListError(null);
      renderRows();
    } catch (err) {
      if (seq !== state.fetchSeq) return;
      if (err && err.code === 'page_out_of_range' && view.page > 1) {
        // Rows went away under us; go to the page that is now the last one.
        const last = /last page, (\d+)/.exec(err.message || '');
        view.page = last ? Math.max(1, Number(last[1])) : 1;
        refresh();
        return;
      }
      showListError(err);
      if (err && (err.code === 'unknown_route' || err.code === 'login_required')) checkStillAdmin();
    }
  }

  /**
   * The `admin:` routes exist only for admin sessions, so "unknown route" usually means the cookie no longer opens
   * the admin (the server restarted with a new secret, or another tab logged out): then show the login form.
   */
  async function checkStillAdmin() {
    try {
      const response = await fetch('/admin/api/schema', { credentials: 'same-origin', cache: 'no-store' });
      if (response.status === 401) location.assign('/admin');
    } catch (_) {
      // The server is unreachable; the connection state in the header already says so.
    }
  }

  function showListError(err) {
    const banner = $('[data-testid="list-error"]');
    if (!banner) return;
    banner.hidden = !err;
    banner.textContent = err ? errorText(err) : '';
    markFilterErrors(err && err.fields);
  }

  function renderRows() {
    const model = currentModel();
    const body = $('[data-testid="rows"]');
    if (!model || !body) return;
    body.replaceChildren(...state.rows.map((row) => renderRow(model, row)));
    $('[data-testid="empty"]').hidden = state.rows.length > 0;

    const page = state.page;
    const view = viewOf(model.name);
    const info = $('[data-testid="page-info"]');
    if (page) {
      info.textContent = `Page ${page.page} of ${page.page_count} · ${page.total} ${page.total === 1 ? 'row' : 'rows'}`;
      $('[data-testid="row-count"]').textContent =
        Object.keys(view.applied).length
          ? `${page.total} ${page.total === 1 ? 'row matches' : 'rows match'} the filter`
          : `${page.total} ${page.total === 1 ? 'row' : 'rows'}`;
    } else {
      info.textContent = `Page ${view.page}`;
    }
    $('[data-testid="prev-page"]').disabled = !(page && page.has_previous);
    $('[data-testid="next-page"]').disabled = !(page && page.has_next);
  }

  function renderRow(model, row) {
    return h('tr', { testid: `row-${row.id}`, 'data-id': row.id },
      model.fields.map((field) => renderCell(field, row[field.name])),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'btn btn-small', testid: `edit-${row.id}`, onclick: () => openEditor(row) },
          'Edit'),
        h('button', {
          type: 'button',
          class: 'btn btn-small btn-danger',
          testid: `delete-${row.id}`,
          onclick: () => deleteRow(model, row),
        }, 'Delete')));
  }

  function renderCell(field, value) {
    const cls = `cell cell-${field.type}`;
    if (value === null || value === undefined) return h('td', { class: `${cls} is-null` }, 'null');
    switch (field.type) {
      case 'bool':
        return h('td', { class: `${cls} ${value ? 'is-true' : 'is-false'}` }, value ? '✓ true' : '✗ false');
      case 'ref':
        return h('td', { class: cls },
          h('a', {
            href: `#/${encodeURIComponent(field.ref)}`,
            title: `Show ${field.ref} #${value}`,
            onclick: (event) => {
              event.preventDefault();
              showRelated(field.ref, value);
            },
          }, String(value)));
      case 'json': {
        const text = JSON.stringify(value);
        return h('td', { class: cls, title: truncate(JSON.stringify(value, null, 2), 2000) }, truncate(text, CELL_MAX_CHARS));
      }
      case 'text': {
        const text = String(value);
        if (text === '') return h('td', { class: `${cls} is-empty` }, '(empty)');
        return h('td', { class: cls, title: text.length > CELL_MAX_CHARS ? truncate(text, 2000) : null },
          truncate(text, CELL_MAX_CHARS));
      }
      default:
        return h('td', { class: cls }, String(value));
    }
  }

  /** Opens the referenced model filtered to one id (a click on a ref cell). */
  function showRelated(modelName, id) {
    const view = viewOf(modelName);
    view.draft = [{ field: 'id', op: 'eq', value: String(id) }];
    view.applied = { id };
    view.page = 1;
    state.current = null; // force a fresh view even if it is the same model
    selectModel(modelName);
  }

  // -------------------------------------------------------------------------------------------------- live updates

  /** Subscribes to the current model with the applied filter, and re-reads the page whenever anything changes. */
  function followLive() {
    const model = currentModel();
    const view = viewOf(model.name);
    const key = `${model.route}\n${JSON.stringify(view.applied)}`;
    if (state.live && state.liveKey === key) return;
    stopLive();
    state.liveKey = key;
    let live;
    try {
      live = state.client.live(model.route, { ...view.applied });
    } catch (err) {
      liveFailed(err);
      return;
    }
    state.live = live;
    let seenLive = false;
    state.liveOffs.push(
      live.on('change', () => {
        if (state.live === live) scheduleRefresh();
      }),
      live.on('status', (status) => {
        if (state.live !== live) return;
        showLiveState(status, live.error);
        if (status === 'live') {
          stopPolling();
          // The first snapshot is what we just read; after a reconnect, re-read in case the log could not replay.
          if (seenLive) scheduleRefresh();
          seenLive = true;
        } else if (status === 'error') {
          liveFailed(live.error);
        }
      }),
    );
    showLiveState(live.status, live.error);
    if (live.status === 'live') seenLive = true;
    if (live.ready && typeof live.ready.catch === 'function') {
      live.ready.catch((err) => {
        if (state.live === live) liveFailed(err || live.error);
      });
    }
  }

  function stopLive() {
    for (const off of state.liveOffs) {
      if (typeof off === 'function') off();
    }
    state.liveOffs = [];
    if (state.live) {
      try {
        state.live.close();
      } catch (_) {
        // Closing a collection whose connection is gone has nothing left to do.
      }
    }
    state.live = null;
    state.liveKey = '';
    stopPolling();
  }

  /** Without live updates the page still follows the data, by re-reading it every few seconds. */
  function liveFailed(err) {
    showLiveState('error', err);
    if (!state.pollTimer) {
      state.pollTimer = setInterval(() => {
        if (!state.editor) refresh();
      }, POLL_INTERVAL_MS);
    }
  }

  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = 0;
  }

  function showLiveState(status, err) {
    const el = $('[data-testid="live-state"]');
    if (!el) return;
    el.dataset.state = status;
    const labels = { loading: 'subscribing…', live: '● live', reconnecting: 'reconnecting…', closed: 'not live' };
    el.textContent = status === 'error' ? `polling every ${POLL_INTERVAL_MS / 1000} s (live updates failed)` : labels[status] || status;
    el.title = status === 'error' && err ? errorText(err) : '';
  }

  // ------------------------------------------------------------------------------------------------------- filters

  function renderFilterBar(model) {
    const view = viewOf(model.name);
    const list = h('div', { class: 'filter-list', testid: 'filters' });
    const bar = h('form', {
      class: 'filter-bar',
      novalidate: true,
      'aria-label': 'Filter',
      onsubmit: (event) => {
        event.preventDefault();
        applyFilter();
      },
    },
    h('span', { class: 'filter-label' }, 'Filter'),
    list,
    h('div', { class: 'filter-buttons' },
      h('button', { type: 'button', class: 'btn btn-small', testid: 'filter-add', onclick: addCondition }, '+ Condition'),
      h('button', { type: 'submit', class: 'btn btn-small btn-primary', testid: 'filter-apply' }, 'Apply'),
      h('button', { type: 'button', class: 'btn btn-small btn-ghost', testid: 'filter-clear', onclick: clearFilter }, 'Clear')));
    renderConditions(list, model, view);
    return bar;
  }

  function renderConditions(list = $('[data-testid="filters"]'), model = currentModel(), view = viewOf(model.name)) {
    if (!view.draft.length) {
      list.replaceChildren(h('span', { class: 'muted filter-none' }, 'none — showing every row'));
      return;
    }
    list.replaceChildren(...view.draft.map((cond, i) => renderCondition(model, view, cond, i)));
  }

  function renderCondition(model, view, cond, i) {
    const field = model.fields.find((f) => f.name === cond.field) || model.fields[0];
    const ops = opsFor(field.type);
    if (!ops.includes(cond.op)) cond.op = ops[0];
    const fieldSelect = h('select', {
      testid: `filter-field-${i}`,
      'aria-label': 'Field',
      onchange: (event) => {
        cond.field = event.target.value;
        const next = model.fields.find((f) => f.name === cond.field);
        cond.op = opsFor(next.type)[0];
        cond.value = '';
        renderConditions();
      },
    }, model.fields.map((f) => h('option', { value: f.name, selected: f.name === field.name }, f.name)));
    const opSelect = h('select', {
      testid: `filter-op-${i}`,
      'aria-label': 'Operator',
      onchange: (event) => {
        const before = valueKind(field, cond.op);
        cond.op = event.target.value;
        if (valueKind(field, cond.op) !== before) cond.value = '';
        renderConditions();
      },
    }, ops.map((op) => h('option', { value: op, selected: op === cond.op }, OP_LABELS[op])));
    return h('div', { class: 'condition', 'data-key': conditionKey(cond) },
      fieldSelect, opSelect, renderConditionValue(field, cond, i),
      h('button', {
        type: 'button',
        class: 'btn btn-small btn-ghost icon',
        testid: `filter-remove-${i}`,
        title: 'Remove this condition',
        'aria-label': 'Remove this condition',
        onclick: () => {
          view.draft.splice(i, 1);
          renderConditions();
        },
      }, '×'),
      h('span', { class: 'field-error', testid: `filter-error-${i}` }));
  }

  /** What kind of value control a condition needs. */
  function valueKind(field, op) {
    if (op === 'isnull' || (field.type === 'bool' && op !== 'in')) return 'bool';
    if (op === 'in') return 'list';
    if (field.type === 'datetime') return 'datetime';
    if (['id', 'int', 'float', 'ref'].includes(field.type)) return 'number';
    return 'text';
  }

  function renderConditionValue(field, cond, i) {
    const common = {
      testid: `filter-value-${i}`,
      'aria-label': 'Value',
      oninput: (event) => {
        cond.value = event.target.value;
      },
      onchange: (event) => {
        cond.value = event.target.value;
      },
    };
    switch (valueKind(field, cond.op)) {
      case 'bool':
        if (cond.value !== 'false') cond.value = 'true';
        return h('select', common,
          h('option', { value: 'true', selected: cond.value === 'true' }, 'true'),
          h('option', { value: 'false', selected: cond.value === 'false' }, 'false'));
      case 'list':
        return h('input', { ...common, type: 'text', value: cond.value, placeholder: 'a, b, c' });
      case 'datetime':
        return h('input', { ...common, type: 'datetime-local', step: '1', value: cond.value, title: 'UTC' });
      case 'number':
        return h('input', { ...common, type: 'number', step: field.type === 'float' ? 'any' : '1', value: cond.value });
      default:
        return h('input', { ...common, type: 'text', value: cond.value });
    }
  }

  function conditionKey(cond) {
    return cond.op === 'eq' ? cond.field : `${cond.field}__${cond.op}`;
  }

  function addCondition() {
    const model = currentModel();
    const view = viewOf(model.name);
    const field = model.fields.find((f) => f.name !== 'id') || model.fields[0];
    view.draft.push({ field: field.name, op: opsFor(field.type)[0], value: '' });
    renderConditions();
    const last = $('[data-testid="filters"]').lastElementChild;
    const select = last && last.querySelector('select');
    if (select) select.focus();
  }

  function clearFilter() {
    const view = viewOf(state.current);
    view.draft = [];
    renderConditions();
    applyFilter();
  }

  /** Turns the draft conditions into filter arguments; marks bad values and returns null if there are any. */
  function buildFilter(model, view) {
    const args = {};
    let ok = true;
    view.draft.forEach((cond, i) => {
      const field = model.fields.find((f) => f.name === cond.field);
      const parsed = parseCondition(field, cond);
      const slot = $(`[data-testid="filter-error-${i}"]`);
      if (slot) slot.textContent = parsed.error || '';
      if (parsed.error) ok = false;
      else args[conditionKey(cond)] = parsed.value;
    });
    return ok ? args : null;
  }

  function parseCondition(field, cond) {
    const text = cond.value || '';
    switch (valueKind(field, cond.op)) {
      case 'bool':
        return { value: text !== 'false' };
      case 'list': {
        const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
        if (!items.length) return { error: 'list at least one value, separated by commas' };
        const values = [];
        for (const item of items) {
          const parsed = parseScalar(field, item);
          if (parsed.error) return parsed;
          values.push(parsed.value);
        }
        return { value: values };
      }
      case 'datetime':
        return parseScalar(field, text, { datetimeInput: true });
      case 'number':
        return parseScalar(field, text);
      default:
        return { value: text };
    }
  }

  function applyFilter() {
    const model = currentModel();
    const view = viewOf(model.name);
    const args = buildFilter(model, view);
    if (!args) return;
    view.applied = args;
    view.page = 1;
    reload();
  }

  /** Puts the server's complaints about filter keys next to the conditions they came from. */
  function markFilterErrors(fields) {
    const model = currentModel();
    if (!model) return;
    const view = viewOf(model.name);
    view.draft.forEach((cond, i) => {
      const slot = $(`[data-testid="filter-error-${i}"]`);
      const messages = fields && fields[conditionKey(cond)];
      if (slot && messages) slot.textContent = [].concat(messages).join('; ');
    });
  }

  // -------------------------------------------------------------------------------------------------------- delete

  async function deleteRow(model, row) {
    const cascades = state.models.flatMap((m) =>
      m.fields.filter((f) => f.ref === model.name && f.on_delete === 'cascade').map((f) => `${m.name}.${f.name}`));
    const also = cascades.length ? `\n\nRows that refer to it through ${cascades.join(', ')} are deleted too.` : '';
    if (!window.confirm(`Delete ${model.name} ${rowLabel(model, row)}?${also}`)) return;
    try {
      await state.client.call(model.route, 'delete', { id: row.id });
      scheduleRefresh(0);
    } catch (err) {
      showListError(`Could not delete ${model.name} #${row.id}: ${errorText(err)}`);
    }
  }

  // -------------------------------------------------------------------------------------------------------- editor

  /** Opens the create form (row null) or the edit form for a row, in a modal dialog. */
  function openEditor(row) {
    closeEditor();
    const model = currentModel();
    const editing = row !== null;
    const fields = model.fields.filter((f) => f.type !== 'id');
    const controls = new Map();
    const form = h('form', { class: 'editor-form', novalidate: true });
    const dialog = h('dialog', { class: 'editor', 'aria-labelledby': 'editor-title', testid: 'editor' }, form);

    form.append(
      h('header', { class: 'editor-head' },
        h('h2', { id: 'editor-title' }, editing ? `Edit ${model.name} #${row.id}` : `New ${model.name}`)),
      h('p', { class: 'form-error', role: 'alert', testid: 'form-error', hidden: true }),
      h('p', { class: 'editor-viewers', role: 'status', testid: 'editor-viewers', hidden: true }),
      h('div', { class: 'editor-fields' }, fields.map((field) => {
        const control = fieldControl(field, editing ? row[field.name] : undefined, editing);
        controls.set(field.name, control);
        return control.block;
      })),
      h('footer', { class: 'editor-foot' },
        h('button', { type: 'button', class: 'btn', testid: 'cancel', onclick: closeEditor }, 'Cancel'),
        h('button', { type: 'submit', class: 'btn btn-primary', testid: 'save' }, editing ? 'Save' : 'Create')));

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      save(model, row, controls, form);
    });
    dialog.addEventListener('cancel', (event) => {
      event.preventDefault();
      closeEditor();
    });
    if (editing) {
      dialog.dataset.model = model.name;
      dialog.dataset.id = String(row.id);
    }
    document.body.append(dialog);
    state.editor = dialog;
    showViewers();
    dialog.showModal();
    const first = form.querySelector('input, select, textarea');
    if (first) first.focus();
  }

  function closeEditor() {
    const dialog = state.editor;
    if (!dialog) return;
    state.editor = null;
    if (dialog.open) dialog.close();
    dialog.remove();
  }

  /**
   * Builds the label, input and error slot for one field. Returns {block, read(), changed(), setError(msg)}:
   * read() gives {value} (null for an empty optional field), {skip} (leave it to the server: its default, or its
   * "required" error) or {error} (a local problem such as bad JSON).
   */
  function fieldControl(field, value, editing) {
    const id = `field-${field.name}`;
    const errorId = `error-${field.name}`;
    const required = !field.optional && (field.default === null || field.default === undefined);
    const start = editing ? value : field.default;
    const attrs = { id, name: field.name, testid: id, 'aria-describedby': errorId };
    let input;
    let extra = null;

    switch (field.type) {
      case 'bool':
        if (field.optional) {
          const current = start === true ? 'true' : start === false ? 'false' : '';
          input = h('select', attrs,
            h('option', { value: '', selected: current === '' }, 'null'),
            h('option', { value: 'true', selected: current === 'true' }, 'true'),
            h('option', { value: 'false', selected: current === 'false' }, 'false'));
        } else {
          input = h('input', { ...attrs, type: 'checkbox', checked: start === true });
        }
        break;
      case 'int':
        input = h('input', { ...attrs, type: 'number', step: '1', inputmode: 'numeric', value: start ?? '' });
        break;
      case 'float':
        input = h('input', { ...attrs, type: 'number', step: 'any', inputmode: 'decimal', value: start ?? '' });
        break;
      case 'datetime':
        input = h('input', { ...attrs, type: 'datetime-local', step: '1', value: toInputDatetime(start) });
        break;
      case 'json':
        input = h('textarea', { ...attrs, rows: 5, spellcheck: 'false', class: 'mono' });
        input.value = start === undefined || start === null ? '' : JSON.stringify(start, null, 2);
        break;
      case 'ref': {
        input = h('input', { ...attrs, type: 'number', step: '1', min: '1', inputmode: 'numeric', value: start ?? '' });
        extra = refPicker(field, input);
        break;
      }
      default: {
        const text = start === undefined || start === null ? '' : String(start);
        if (text.includes('\n') || text.length > LONG_TEXT_CHARS) {
          input = h('textarea', { ...attrs, rows: 4 });
          input.value = text;
        } else {
          input = h('input', { ...attrs, type: 'text', value: text, autocomplete: 'off' });
        }
      }
    }

    const initial = snapshot(input);
    const error = h('p', { class: 'field-error', id: errorId, testid: errorId, 'aria-live': 'polite' });
    const hints = [
      field.type === 'ref' ? `ref → ${field.ref}` : field.type,
      field.type === 'datetime' ? 'UTC' : null,
      field.optional ? 'optional — leave empty for null' : null,
      field.unique ? 'unique' : null,
      !editing && field.default !== null && field.default !== undefined && field.type !== 'bool'
        ? `default ${JSON.stringify(field.default)}` : null,
      field.on_delete ? `on delete: ${field.on_delete}` : null,
    ].filter(Boolean);
    const isCheckbox = input.type === 'checkbox';
    const label = h('label', { for: id, class: 'field-label' },
      field.name, required ? h('span', { class: 'required', title: 'required' }, ' *') : null);
    const block = h('div', { class: `field field-${field.type}${isCheckbox ? ' field-check' : ''}`, 'data-field': field.name },
      isCheckbox ? h('div', { class: 'check-row' }, input, label) : [label, h('div', { class: 'control' }, input, extra)],
      h('p', { class: 'field-hint muted' }, hints.join(' · ')),
      error);

    function read() {
      if (isCheckbox) return { value: input.checked };
      if (input.validity && input.validity.badInput) {
        return { error: field.type === 'datetime' ? 'enter a complete date and time' : 'enter a number' };
      }
      const text = input.value;
      if (text.trim() === '') {
        if (field.optional) return { value: null };
        // A text field with a default may be emptied on purpose; "" is a value like any other.
        if (field.type === 'text' && !required) return { value: text };
        // Let the server speak: on create it applies the default or says the field is required.
        return editing ? { value: null } : { skip: true };
      }
      if (field.type === 'bool') return parseScalar(field, text);
      if (field.type === 'datetime') return parseScalar(field, text, { datetimeInput: true });
      if (field.type === 'text') return { value: text };
      return parseScalar(field, text);
    }

    return {
      block,
      input,
      read,
      changed: () => snapshot(input) !== initial,
      setError(message) {
        error.textContent = message || '';
        if (message) input.setAttribute('aria-invalid', 'true');
        else input.removeAttribute('aria-invalid');
        block.classList.toggle('has-error', Boolean(message));
      },
    };
  }

  function snapshot(input) {
    return input.type === 'checkbox' ? String(input.checked) : input.value;
  }

  /** A select of the referenced model's first rows, kept in step with the id input beside it. */
  function refPicker(field, input) {
    const target = state.byName.get(field.ref);
    if (!target) return null;
    const select = h('select', { testid: `ref-${field.name}`, 'aria-label': `Pick a ${field.ref}`, disabled: true },
      h('option', { value: '' }, 'loading…'));
    const sync = () => {
      const match = Array.from(select.options).some((o) => o.value === input.value);
      select.value = match ? input.value : '';
    };
    select.addEventListener('change', () => {
      if (select.value !== '') {
        input.value = select.value;
        input.dispatchEvent(new Event('input', { bubbles: true }));
      }
    });
    input.addEventListener('input', sync);
    state.client.call(target.route, 'get_list', {}).then((rows) => {
      const options = [h('option', { value: '' }, `choose a ${field.ref}…`)];
      for (const row of Array.isArray(rows) ? rows : []) options.push(h('option', { value: String(row.id) }, rowLabel(target, row)));
      select.replaceChildren(...options);
      select.disabled = false;
      sync();
    }, () => {
      select.remove();
    });
    return select;
  }

  async function save(model, row, controls, form) {
    const editing = row !== null;
    const formError = $('[data-testid="form-error"]', form);
    const saveButton = $('[data-testid="save"]', form);
    formError.hidden = true;
    formError.textContent = '';
    const args = {};
    let bad = false;
    for (const [name, control] of controls) {
      control.setError('');
      if (editing && !control.changed()) continue; // send only what was edited: never undo someone else's change
      const result = control.read();
      if (result.error) {
        control.setError(result.error);
        bad = true;
      } else if (!result.skip) {
        args[name] = result.value;
      }
    }
    if (bad) {
      showFormError(formError, 'Fix the fields marked below.');
      return;
    }
    if (editing) args.id = row.id;
    saveButton.disabled = true;
    try {
      await state.client.call(model.route, editing ? 'update' : 'create', args);
      closeEditor();
      scheduleRefresh(0);
    } catch (err) {
      const fields = (err && err.fields) || {};
      for (const [name, messages] of Object.entries(fields)) {
        const text = [].concat(messages).join('; ');
        const control = controls.get(name);
        if (control) control.setError(text);
      }
      // The server's message already sums up the field errors; fields the form has no input for stay only there.
      showFormError(formError, errorText(err));
      const firstBad = form.querySelector('[aria-invalid="true"]');
      if (firstBad) firstBad.focus();
    } finally {
      saveButton.disabled = false;
    }
  }

  function showFormError(slot, message) {
    slot.textContent = message;
    slot.hidden = false;
  }

  // -----------------------------------------------------------------------------------------------------------------

  window.addEventListener('pagehide', () => {
    stopLive();
  });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
