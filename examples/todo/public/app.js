// The todo demo from the talk: pick or create a list, add, tick, edit and delete its items, and watch every change
// made anywhere else (another browser, the admin page, a script) arrive live.
//
// All data comes from two live collections of the drakon client (`/drakon.js`, global `drakon`): every list, and the
// items of the list named in the URL hash (`#list=3`), so a reload or a second browser opens the same list. The page
// never edits its own copy of the data: it writes through `client.call` and redraws when the live collection changes,
// which is also how it sees everyone else's writes.
'use strict';

(function main() {
  const $ = (id) => document.getElementById(id);
  const connectionBanner = document.querySelector('[data-testid="connection-banner"]');
  const errorBanner = document.querySelector('[data-testid="error-banner"]');

  // ---- error banner -----------------------------------------------------------------------------------------------

  let errorTimer = 0;

  /** The server's message for a failed call, with per-field messages it does not already contain. */
  function describeError(err) {
    if (!err) return 'something went wrong';
    let message = err.message || String(err);
    if (err.fields && typeof err.fields === 'object') {
      const extra = Object.entries(err.fields)
        .map(([field, messages]) => [field, [].concat(messages).filter((m) => !message.includes(m))])
        .filter(([, messages]) => messages.length)
        .map(([field, messages]) => `${field}: ${messages.join(', ')}`);
      if (extra.length) message += ` (${extra.join('; ')})`;
    }
    return message;
  }

  function showError(what, err) {
    $('error-text').textContent = `${what}: ${describeError(err)}`;
    errorBanner.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(hideError, 10000);
  }

  function hideError() {
    clearTimeout(errorTimer);
    errorBanner.hidden = true;
  }

  $('error-dismiss').addEventListener('click', hideError);

  if (typeof drakon === 'undefined') {
    $('connection-text').textContent = 'The drakon client did not load.';
    connectionBanner.querySelector('.spinner').hidden = true;
    showError('Cannot start', { message: '/drakon.js did not load; is the drakon server running?' });
    clearTimeout(errorTimer);
    return;
  }

  // ---- connection -------------------------------------------------------------------------------------------------

  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/data/websocket`;
  const client = drakon.connect(url);

  const STATE_TEXT = {
    connecting: 'Connecting…',
    reconnecting: 'Connection lost. Reconnecting…',
    closed: 'Disconnected. Reload the page to reconnect.',
  };

  function renderConnection() {
    const state = client.state;
    connectionBanner.hidden = state === 'open';
    $('connection-text').textContent = STATE_TEXT[state] || state;
  }

  client.on('state', renderConnection);
  renderConnection();

  // ---- account ----------------------------------------------------------------------------------------------------

  // With built-in users (`drakon-users.toml`), the server answers `/auth/me`: the signed-in user, or 401 for a
  // visitor. Without them it answers 404 and the page stays the open demo. Logging in or out reloads the page, so
  // the socket reconnects with (or without) the session cookie and every live list follows the new user's rules.
  let account = { users: false, user: null };

  async function loadAccount() {
    try {
      const response = await fetch('/auth/me', { credentials: 'same-origin' });
      if (response.status === 404) return;
      const body = await response.json().catch(() => ({}));
      account = { users: true, user: response.ok ? body.user : null };
    } catch (err) {
      return; // no account box; the connection banner says what is wrong
    }
    renderAccount();
  }

  function renderAccount() {
    $('account').hidden = !account.users;
    $('login-form').hidden = !account.users || account.user !== null;
    $('logout').hidden = account.user === null;
    $('new-list-visibility').hidden = account.user === null;
    $('account-who').textContent = account.user
      ? `Signed in as ${(account.user.info && account.user.info.name) || account.user.id}`
      : 'Visitor: you see the public lists. Log in to keep your own.';
  }

  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = $('login-name').value.trim();
    const password = $('login-password').value;
    try {
      const response = await fetch('/auth/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name, password }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({ message: response.statusText }));
        showError('Could not log in', body);
        return;
      }
      location.reload();
    } catch (err) {
      showError('Could not log in', err);
    }
  });

  $('logout').addEventListener('click', async () => {
    try {
      await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin' });
    } finally {
      location.reload();
    }
  });

  loadAccount();

  // ---- helpers ----------------------------------------------------------------------------------------------------

  /** Builds an element; `attrs` become attributes, except `on*`, which become listeners. */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (value !== false && value != null) el.setAttribute(key, value === true ? '' : value);
    }
    el.append(...children);
    return el;
  }

  /**
   * Says an input needs text, in its own placeholder and outline: a hint line under it would shift the page under
   * the pointer. Typing puts the usual placeholder back.
   */
  function markEmpty(input, hint) {
    if (!input.dataset.placeholder) input.dataset.placeholder = input.placeholder;
    input.placeholder = hint;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    input.addEventListener('input', () => {
      input.placeholder = input.dataset.placeholder;
      input.removeAttribute('aria-invalid');
    }, { once: true });
  }

  const listName = (list) => (list && list.name && list.name.trim()) || 'Untitled list';

  function listIdFromHash() {
    const raw = new URLSearchParams(location.hash.replace(/^#/, '')).get('list');
    return raw && /^\d+$/.test(raw) ? Number(raw) : null;
  }

  // ---- page state -------------------------------------------------------------------------------------------------

  let currentId = null;
  let knownName = null; // the current list's last name seen, to say which list was deleted
  let items = null; // the live collection of the current list's items
  let stopListening = [];
  const itemViews = new Map(); // item id → ItemView

  // ---- lists ------------------------------------------------------------------------------------------------------

  const lists = client.live('todo-list', {}, { order: 'id' });
  lists.ready.catch(() => {}); // shown through `status`; nothing else waits on it
  const listLinks = new Map(); // list id → <li>
  // Lists this page just created, until the live collection has them too (the reply can beat the event).
  const justCreated = new Map();

  function findList(id) {
    const live = lists.get(id);
    if (live) justCreated.delete(id);
    return live || justCreated.get(id) || null;
  }

  function renderLists() {
    const rows = lists.items;
    const status = lists.status;
    const note = $('lists-status');
    if (status === 'loading') note.textContent = 'Loading lists…';
    else if (status === 'error') note.textContent = `Could not load the lists: ${describeError(lists.error)}`;
    else if (rows.length === 0) note.textContent = 'No lists yet. Create the first one below.';
    else note.textContent = '';
    note.hidden = note.textContent === '';
    note.classList.toggle('state-error', status === 'error');

    const ul = $('lists');
    const seen = new Set();
    let previous = null;
    for (const list of rows) {
      let li = listLinks.get(list.id);
      if (!li) {
        li = h('li', {}, h('a', { href: `#list=${list.id}`, 'data-testid': `list-link-${list.id}`, class: 'list-link' }));
        listLinks.set(list.id, li);
      }
      const a = li.firstChild;
      a.textContent = listName(list);
      if (account.users) {
        const who = list.public ? 'everyone' : list.shared ? 'signed-in users' : 'only its owner';
        a.title = `${list.owner ? `${list.owner}'s list` : 'A list'}, seen by ${who}`;
        a.dataset.visibility = list.public ? 'public' : list.shared ? 'shared' : 'private';
      }
      if (list.id === currentId) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
      const wanted = previous ? previous.nextSibling : ul.firstChild;
      if (li !== wanted) ul.insertBefore(li, wanted);
      previous = li;
      seen.add(list.id);
    }
    for (const [id, li] of listLinks) {
      if (!seen.has(id)) {
        li.remove();
        listLinks.delete(id);
      }
    }
  }

  lists.on('change', () => {
    renderLists();
    renderMain();
  });
  lists.on('status', () => {
    renderLists();
    renderMain();
  });

  $('new-list-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('new-list-name');
    const button = document.querySelector('[data-testid="new-list-submit"]');
    const name = input.value.trim();
    if (!name) {
      markEmpty(input, 'Name the list first…');
      return;
    }
    button.disabled = true;
    try {
      const fields = { name };
      if (account.user) {
        const visibility = $('new-list-visibility').value;
        fields.shared = visibility === 'shared';
        fields.public = visibility === 'public';
      }
      const list = await client.call('todo-list', 'create', fields);
      justCreated.set(list.id, list);
      input.value = '';
      location.hash = `list=${list.id}`;
    } catch (err) {
      showError('Could not create the list', err);
    } finally {
      button.disabled = false;
    }
  });

  // ---- the current list -------------------------------------------------------------------------------------------

  // ---- presence: who else has the list open, and who is editing which item ----------------------------------------
  //
  // One presence room per open list (its route has `[presence]` in drakon-users.toml): each member's state says
  // which item they are editing, `{editing: 7}`. Without presence on the server (drakon.toml), the join is refused
  // and none of this shows.

  let here = null;

  function joinPresence(id) {
    const room = client.presence('todo-list', id);
    here = room;
    room.ready.catch(() => {
      if (here === room) here = null;
      renderPresence();
    });
    room.on('change', () => {
      if (here === room) renderPresence();
    });
  }

  function leavePresence() {
    if (here) here.close().catch(() => {});
    here = null;
    renderPresence();
  }

  /** Sets what this page is editing (an item id, or null) for the others to see. */
  function editingNow(itemId) {
    if (here) here.set(itemId === null ? {} : { editing: itemId }).catch(() => {});
  }

  function renderPresence() {
    const me = client.user ? client.user.id : null;
    const others = here ? [...here.members.values()].filter((m) => m.id !== me) : [];
    const line = $('list-presence');
    line.hidden = others.length === 0;
    line.replaceChildren(
      'Also here: ',
      ...others.map((m) =>
        h('span', { class: 'initials', title: m.id, 'data-testid': `presence-member-${m.id}` }, initials(m.id)),
      ),
    );
    for (const view of itemViews.values()) {
      const editors = others.filter((m) => m.state && m.state.editing === view.id).map((m) => m.id);
      view.showEditors(editors);
    }
  }

  function initials(id) {
    const words = id.split(/[^A-Za-z0-9]+/).filter(Boolean);
    const letters = words.length > 1 ? words[0][0] + words[1][0] : id.slice(0, 2);
    return letters.toUpperCase();
  }

  function openFromHash() {
    const id = listIdFromHash();
    if (id === currentId) return;
    closeItems();
    leavePresence();
    currentId = id;
    knownName = null;
    if (id !== null) {
      joinPresence(id);
      const collection = client.live('todo-item', { list_id: id }, { order: 'id' });
      collection.ready.catch(() => {}); // shown through `status`
      items = collection;
      const redraw = () => {
        if (items === collection) renderItems();
      };
      stopListening = [collection.on('change', redraw), collection.on('status', redraw)];
    }
    renderLists();
    renderMain();
    renderItems();
  }

  function closeItems() {
    for (const off of stopListening) off();
    stopListening = [];
    if (items) items.close().catch(() => {});
    items = null;
    itemViews.clear();
    $('items').replaceChildren();
  }

  /** Which of the three main panes shows: nothing picked, the list, or "this list is gone". */
  function renderMain() {
    const list = currentId === null ? null : findList(currentId);
    if (list) knownName = listName(list);
    const gone = currentId !== null && !list && lists.status === 'live';
    $('no-list').hidden = currentId !== null;
    $('list-gone').hidden = !gone;
    $('list-view').hidden = currentId === null || gone;

    if (gone) {
      $('list-gone-title').textContent = knownName ? `“${knownName}” was deleted` : `There is no list #${currentId}`;
      $('list-gone-text').textContent = knownName
        ? 'Someone deleted this list while you had it open. Pick another list, or create a new one.'
        : 'It may have been deleted. Pick another list, or create a new one.';
      document.title = 'List deleted · Todo';
    } else if (currentId !== null) {
      $('current-list-name').textContent = list ? listName(list) : 'Loading…';
      $('current-list-description').textContent = (list && list.description) || '';
      $('current-list-description').hidden = !(list && list.description);
      document.title = list ? `${listName(list)} · Todo` : 'Todo';
    } else {
      document.title = 'Todo';
    }
  }

  // ---- items ------------------------------------------------------------------------------------------------------

  function renderItems() {
    const collection = items;
    const status = collection ? collection.status : 'closed';
    const rows = collection ? collection.items : [];
    $('items-loading').hidden = status !== 'loading';
    $('items-error').hidden = status !== 'error';
    if (status === 'error') $('items-error').textContent = `Could not load the items: ${describeError(collection.error)}`;
    const known = status === 'live' || status === 'reconnecting';
    $('empty-state').hidden = !(known && rows.length === 0);
    $('items').classList.toggle('stale', status === 'reconnecting');
    $('items-help').hidden = rows.length === 0;

    const done = rows.filter((row) => row.done).length;
    $('item-count').textContent = known && rows.length ? `${done} of ${rows.length} done` : '';

    const ul = $('items');
    const seen = new Set();
    let previous = null;
    for (const row of rows) {
      let view = itemViews.get(row.id);
      if (!view) {
        view = new ItemView(row.id);
        itemViews.set(row.id, view);
      }
      view.update(row);
      const wanted = previous ? previous.nextSibling : ul.firstChild;
      if (view.li !== wanted) ul.insertBefore(view.li, wanted);
      previous = view.li;
      seen.add(row.id);
    }
    for (const [id, view] of itemViews) {
      if (!seen.has(id)) {
        view.li.remove();
        itemViews.delete(id);
      }
    }
    renderPresence();
  }

  /** One item's row: checkbox, text (or its editor while editing), edit and delete buttons. */
  class ItemView {
    constructor(id) {
      this.id = id;
      this.row = null;
      this.editing = false;
      this.saving = false;
      // Our own writes, shown from the moment they are sent until the live event confirms them (the reply can come
      // before the event, and a redraw in between must not flip the item back for a moment).
      this.pendingDone = null;
      this.pendingText = null;

      this.check = h('input', {
        type: 'checkbox',
        class: 'check',
        'data-testid': `item-done-${id}`,
        onchange: () => this.toggle(),
      });
      this.text = h('span', {
        class: 'item-text',
        'data-testid': `item-text-${id}`,
        title: 'Double-click to edit',
        ondblclick: () => this.startEdit(),
      });
      this.input = h('input', {
        type: 'text',
        class: 'item-input',
        'data-testid': `item-edit-input-${id}`,
        maxlength: '1000',
        hidden: true,
        onkeydown: (event) => this.onKey(event),
        oninput: () => this.input.removeAttribute('aria-invalid'),
        onblur: () => this.commit(),
      });
      this.editButton = h('button', {
        type: 'button',
        class: 'icon-button',
        'data-testid': `item-edit-${id}`,
        // Keep focus in the editor, so pressing "save" does not first blur (and save) it.
        onmousedown: (event) => this.editing && event.preventDefault(),
        onclick: () => (this.editing ? this.commit() : this.startEdit()),
      });
      this.deleteButton = h('button', {
        type: 'button',
        class: 'icon-button icon-danger',
        'data-testid': `item-delete-${id}`,
        onclick: () => this.remove(),
      }, '×');
      this.editors = h('span', { class: 'item-editors', 'data-testid': `item-editing-${id}`, hidden: true });
      this.li = h(
        'li',
        { class: 'item', 'data-testid': `item-${id}` },
        h('label', { class: 'check-wrap' }, this.check),
        this.text,
        this.input,
        this.editors,
        h('span', { class: 'item-actions' }, this.editButton, this.deleteButton),
      );
      this.renderButtons();
    }

    /** Says who else is editing this item right now. */
    showEditors(ids) {
      this.editors.hidden = ids.length === 0;
      this.editors.textContent = ids.length ? `${ids.join(', ')} ${ids.length > 1 ? 'are' : 'is'} editing` : '';
    }

    update(row) {
      this.row = row;
      if (this.pendingDone === Boolean(row.done)) this.pendingDone = null;
      if (this.pendingText === row.text) this.pendingText = null;
      this.text.textContent = this.pendingText !== null ? this.pendingText : row.text;
      const done = this.pendingDone !== null ? this.pendingDone : Boolean(row.done);
      this.check.checked = done;
      this.li.classList.toggle('done', done);
      this.check.setAttribute('aria-label', `Done: ${row.text}`);
      this.deleteButton.setAttribute('aria-label', `Delete “${row.text}”`);
      this.renderButtons();
    }

    renderButtons() {
      const text = this.row ? this.row.text : '';
      this.editButton.textContent = this.editing ? '✓' : '✎';
      this.editButton.setAttribute('aria-label', this.editing ? 'Save' : `Edit “${text}”`);
      this.editButton.title = this.editing ? 'Save (Enter)' : 'Edit';
    }

    async toggle() {
      const done = this.check.checked;
      this.pendingDone = done;
      this.li.classList.toggle('done', done);
      try {
        await client.call('todo-item', 'update', { id: this.id, done });
        this.settle('pendingDone', done, CONFIRM_MS);
      } catch (err) {
        showError(done ? 'Could not tick the item' : 'Could not untick the item', err);
        this.settle('pendingDone', done, 0);
      }
    }

    /**
     * Stops showing a pending value after `ms` if no live event confirmed it (a write that changed nothing publishes
     * nothing), and from then on shows the row as the server last sent it.
     */
    settle(key, value, ms) {
      setTimeout(() => {
        if (this[key] !== value) return;
        this[key] = null;
        this.update(itemsRow(this.id) || this.row);
      }, ms);
    }

    startEdit() {
      if (this.editing || !this.row) return;
      this.editing = true;
      this.li.classList.add('editing');
      this.input.value = this.row.text;
      this.input.removeAttribute('aria-invalid');
      this.text.hidden = true;
      this.input.hidden = false;
      this.renderButtons();
      this.input.focus();
      this.input.select();
      editingNow(this.id);
    }

    stopEdit() {
      this.editing = false;
      this.li.classList.remove('editing');
      this.text.hidden = false;
      this.input.hidden = true; // hiding the focused editor blurs it; `editing` is already false, so nothing saves
      this.renderButtons();
      editingNow(null);
    }

    onKey(event) {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.commit();
      } else if (event.key === 'Escape') {
        event.preventDefault();
        this.stopEdit();
        this.editButton.focus();
      }
    }

    async commit() {
      if (!this.editing || this.saving) return;
      const text = this.input.value.trim();
      if (!text) {
        this.input.setAttribute('aria-invalid', 'true');
        showError('Not saved', { message: 'an item needs some text; press Escape to keep the old one' });
        return;
      }
      if (text === this.row.text) {
        this.stopEdit();
        return;
      }
      this.saving = true;
      this.input.readOnly = true;
      try {
        this.pendingText = text;
        await client.call('todo-item', 'update', { id: this.id, text });
        this.settle('pendingText', text, CONFIRM_MS);
        this.stopEdit();
        this.update(itemsRow(this.id) || this.row);
      } catch (err) {
        this.pendingText = null;
        showError('Could not save the item', err);
        this.input.focus();
      } finally {
        this.saving = false;
        this.input.readOnly = false;
      }
    }

    async remove() {
      this.deleteButton.disabled = true;
      this.li.classList.add('removing');
      try {
        await client.call('todo-item', 'delete', { id: this.id });
        // The live collection drops the row when the `deleted` event arrives.
      } catch (err) {
        if (err && err.code === 'not_found') return; // someone else deleted it first: the outcome we wanted
        showError('Could not delete the item', err);
      } finally {
        this.deleteButton.disabled = false;
        this.li.classList.remove('removing');
      }
    }
  }

  /** How long a write of ours shows after its reply while the live event that confirms it is awaited. */
  const CONFIRM_MS = 1500;

  function itemsRow(id) {
    return items ? items.get(id) : null;
  }

  $('new-item-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('new-item-text');
    const button = document.querySelector('[data-testid="new-item-submit"]');
    const text = input.value.trim();
    if (!text) {
      markEmpty(input, 'Type what needs doing first…');
      return;
    }
    const listId = currentId;
    button.disabled = true;
    try {
      await client.call('todo-item', 'create', { text, todo_list: listId });
      if (currentId === listId) input.value = '';
    } catch (err) {
      showError('Could not add the item', err);
    } finally {
      button.disabled = false;
      input.focus();
    }
  });

  window.addEventListener('hashchange', openFromHash);
  openFromHash();
  renderLists();
})();
