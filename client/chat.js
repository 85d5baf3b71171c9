// The chat screen: the conversation list, one open conversation, the
// composer, and the dialogs for invitations and passwords. It renders the
// ChatState; it never changes it except through the API, whose events come
// back through the stream.

import {call, explain, randomKey} from './api.js';
import {append, clear, h, reconcile} from './dom.js';
import {ChatState, ReadMarkers} from './state.js';
import {bodyNodes, timeNode} from './text.js';
import {notify} from './notify.js';

const PAGE = 100;               // messages rendered at once, more on request
const LIST_PAGE = 300;          // conversations rendered at once, more on request
const NAME_HINT = 'Names are 1 to 63 characters, without control characters, spaces at either end or double spaces.';

export class ChatView {
  // app: {navigate(path), logOut(), root}
  constructor(app) {
    this.app = app;
    this.state = null;
    this.markers = null;
    this.openId = null;         // the conversation in the URL, if any
    this.awaitingId = null;     // created by us, its event not seen yet
    this.window = PAGE;         // how many messages of the open conversation are rendered
    this.listLimit = LIST_PAGE;
    this.listItems = new Map();     // conversation id -> <li>
    this.messageItems = new Map();  // message id -> <li> (open conversation)
    this.pending = [];          // sends awaiting their event: {key, conversation, text, id}
    this.draft = {text: null, key: null};
    this.renderQueued = false;
    this.build();
    this.onVisible = () => this.queueRender();
    this.onStorage = (e) => {
      if (this.markers && e.key === this.markers.key) {
        this.markers.reload();
        this.queueRender();
      }
    };
    // The account menu closes on a click elsewhere or on Escape.
    this.onDocumentClick = (e) => {
      if (this.menu.open && !this.menu.contains(e.target)) this.closeMenu();
    };
    this.onKey = (e) => {
      if (e.key === 'Escape' && this.menu.open) {
        this.closeMenu();
        this.menu.querySelector('summary').focus();
      }
    };
    document.addEventListener('visibilitychange', this.onVisible);
    document.addEventListener('click', this.onDocumentClick);
    document.addEventListener('keydown', this.onKey);
    window.addEventListener('focus', this.onVisible);
    window.addEventListener('storage', this.onStorage);
  }

  destroy() {
    document.removeEventListener('visibilitychange', this.onVisible);
    document.removeEventListener('click', this.onDocumentClick);
    document.removeEventListener('keydown', this.onKey);
    window.removeEventListener('focus', this.onVisible);
    window.removeEventListener('storage', this.onStorage);
    this.element.remove();
    document.title = 'Quire';
  }

  // --- Layout -------------------------------------------------------------

  build() {
    this.status = h('span', {class: 'status', role: 'status'}, 'Connecting…');
    this.meName = h('span', {class: 'me'});
    this.notifyButton = h('button', {type: 'button', class: 'quiet', hidden: true, onclick: () => this.askNotifications()}, 'Allow notifications');
    this.menu = h('details', {class: 'menu'},
        h('summary', {}, this.meName, h('span', {class: 'visually-hidden'}, ', account menu')),
        h('div', {class: 'menu-items'},
            h('button', {type: 'button', class: 'quiet', onclick: () => this.openPassword()}, 'Change password'),
            this.notifyButton,
            h('button', {type: 'button', class: 'quiet', onclick: () => this.logOut()}, 'Log out')));
    const topbar = h('header', {class: 'topbar'},
        h('a', {class: 'brand', href: '/', onclick: (e) => this.follow(e, '/')}, 'Quire'),
        this.status,
        h('div', {class: 'actions'},
            h('button', {type: 'button', class: 'quiet', onclick: () => this.openInvite()}, 'Invite'),
            this.menu));

    this.newName = h('input', {id: 'new-conversation', name: 'name', autocomplete: 'off', maxlength: 200, required: true, placeholder: 'New conversation'});
    this.newError = h('p', {class: 'error', role: 'alert'});
    const createForm = h('form', {class: 'new-conversation', onsubmit: (e) => this.createConversation(e)},
        h('label', {for: 'new-conversation', class: 'visually-hidden'}, 'New conversation name'),
        this.newName,
        h('button', {type: 'submit'}, 'Create'),
        this.newError);
    this.list = h('ul', {class: 'conversation-list'});
    this.listEmpty = h('p', {class: 'hint'}, 'No conversations yet: create the first one above.');
    this.listMore = h('button', {type: 'button', class: 'quiet more', hidden: true, onclick: () => {
      this.listLimit += LIST_PAGE;
      this.queueRender();
    }}, 'Show more conversations');
    this.sidebar = h('nav', {class: 'sidebar', 'aria-label': 'Conversations'},
        createForm, h('h2', {class: 'visually-hidden'}, 'Conversations'), this.list, this.listEmpty, this.listMore);

    this.pane = h('main', {class: 'conversation-pane', id: 'main'});
    this.announcer = h('div', {class: 'visually-hidden', 'aria-live': 'polite', 'aria-atomic': 'false'});
    this.element = h('div', {class: 'chat'},
        h('a', {class: 'skip-link', href: '#composer-input'}, 'Skip to the message box'),
        topbar, h('div', {class: 'panes'}, this.sidebar, this.pane), this.announcer);
    this.app.root.replaceChildren(this.element);
  }

  // --- From the connection ------------------------------------------------

  // A boot: everything is built anew from its events (after a 410, a restore
  // or a new login nothing of the old view survives).
  boot(data) {
    const state = new ChatState(data.login);
    for (const event of data.events) state.apply(event);
    this.state = state;
    this.markers = new ReadMarkers(data.login.id, state);
    this.meName.textContent = data.login.name;
    this.pending = this.pending.filter((p) => !(p.id && state.hasMessage(p.id)));
    this.paneFor = null;  // rebuild the open conversation's pane
    this.listItems.clear();
    this.notifyButton.hidden = !('Notification' in window) || Notification.permission !== 'default';
    this.queueRender();
  }

  // The next event of the stream (the Connection passes each once, in order).
  event(event) {
    const change = this.state.apply(event);
    if (!change) return;
    if (change.kind === 'message') {
      this.pending = this.pending.filter((p) => p.id !== change.message.id);
      if (change.message.sender !== this.state.me.id) this.tell(change);
    } else if (change.kind === 'conversation-deleted') {
      this.markers.forget(change.conversation.id);
    } else if (change.kind === 'conversation' && change.conversation.id === this.awaitingId) {
      this.awaitingId = null;
    }
    this.queueRender();
  }

  setStatus(status) {
    const text = {
      connecting: 'Connecting…',
      live: 'Live',
      reconnecting: 'Reconnecting…',
      offline: 'Offline, retrying…',
    }[status] || status;
    this.status.textContent = text;
    this.status.dataset.state = status;
  }

  // --- Navigation ---------------------------------------------------------

  follow(event, path) {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    this.app.navigate(path);
  }

  show(conversationId) {
    if (conversationId !== this.openId) {
      this.openId = conversationId;
      this.window = PAGE;
      this.paneFor = null;
    }
    this.queueRender();
  }

  // --- Rendering ----------------------------------------------------------

  queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    setTimeout(() => {
      this.renderQueued = false;
      if (this.state) this.render();
    }, 0);
  }

  render() {
    this.renderConversation();
    this.renderList();
    this.element.classList.toggle('show-conversation', this.openId !== null);
  }

  renderList() {
    const conversations = [...this.state.conversations.values()]
        .sort((a, b) => b.activity - a.activity);
    let total = 0;
    const wanted = [];
    for (const conversation of conversations) {
      const unread = conversation.unreadAfter(this.markers.marker(conversation.id), this.state.me.id,
          (id) => this.state.hasMessage(id));
      total += unread;
      if (wanted.length < this.listLimit) wanted.push(this.listItem(conversation, unread));
    }
    reconcile(this.list, wanted);
    for (const id of this.listItems.keys()) {
      if (!this.state.conversations.has(id)) this.listItems.delete(id);
    }
    this.listEmpty.hidden = conversations.length > 0;
    this.listMore.hidden = conversations.length <= this.listLimit;
    const open = this.openId && this.state.conversations.get(this.openId);
    const name = open ? `${open.name} · Quire` : 'Quire';
    document.title = total > 0 ? `(${total}) ${name}` : name;
  }

  listItem(conversation, unread) {
    let item = this.listItems.get(conversation.id);
    if (!item) {
      const link = h('a', {href: `/c/${conversation.id}`, onclick: (e) => this.follow(e, `/c/${conversation.id}`)},
          h('span', {class: 'name'}), h('span', {class: 'unread'}));
      item = h('li', {'data-id': conversation.id}, link);
      this.listItems.set(conversation.id, item);
    }
    const link = item.firstChild;
    const [nameNode, badge] = link.children;
    if (nameNode.textContent !== conversation.name) nameNode.textContent = conversation.name;
    badge.textContent = unread > 0 ? String(unread) : '';
    badge.hidden = unread === 0;
    link.setAttribute('aria-label', unread > 0 ? `${conversation.name}, ${unread} unread` : conversation.name);
    if (conversation.id === this.openId) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
    return item;
  }

  renderConversation() {
    if (this.openId === null) {
      if (this.paneFor !== '') {
        this.paneFor = '';
        this.messageItems.clear();
        this.pane.replaceChildren(h('div', {class: 'empty'},
            h('p', {}, 'Pick a conversation, or create one.')));
      }
      return;
    }
    const conversation = this.state.conversations.get(this.openId);
    if (!conversation) {
      const text = this.awaitingId === this.openId ? 'Opening…' :
          'This conversation does not exist, or it was deleted.';
      this.paneFor = null;
      this.messageItems.clear();
      this.pane.replaceChildren(h('div', {class: 'empty'},
          h('p', {class: 'gone'}, text),
          h('a', {href: '/', onclick: (e) => this.follow(e, '/')}, 'Back to all conversations')));
      return;
    }
    if (this.paneFor !== conversation.id) this.buildPane(conversation);
    const view = this.paneView;
    if (view.title.textContent !== conversation.name) view.title.textContent = conversation.name;

    const scroller = view.scroller;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    const messages = conversation.newest(this.window);
    reconcile(view.messages, messages.map((m) => this.messageItem(m)));
    for (const [id, item] of this.messageItems) {
      if (!item.isConnected) this.messageItems.delete(id);
    }
    view.earlier.hidden = conversation.liveCount <= this.window;
    view.empty.hidden = conversation.liveCount > 0;
    reconcile(view.pending, this.pending.filter((p) => p.conversation === conversation.id)
        .map((p) => p.item));
    if (atBottom || view.fresh) scroller.scrollTop = scroller.scrollHeight;
    view.fresh = false;

    if (document.visibilityState === 'visible') {
      this.markers.markRead(conversation);
    }
  }

  buildPane(conversation) {
    // A fresh boot rebuilds the pane: what was typed stays.
    const draft = this.paneView && this.paneView.conversationId === conversation.id ?
        this.paneView.input.value : '';
    this.paneFor = conversation.id;
    this.messageItems.clear();
    const title = h('h1', {id: 'conversation-title'});
    const deleteError = h('p', {class: 'error', role: 'alert'});
    const earlier = h('button', {type: 'button', class: 'quiet earlier', onclick: () => {
      this.window += PAGE;
      this.queueRender();
    }}, 'Show earlier messages');
    const messages = h('ol', {class: 'messages', 'aria-labelledby': 'conversation-title'});
    const empty = h('p', {class: 'hint'}, 'No messages yet. Say hello!');
    const pending = h('ol', {class: 'messages pending', 'aria-label': 'Sending'});
    const scroller = h('div', {class: 'scroller'}, earlier, empty, messages, pending);
    const input = h('textarea', {id: 'composer-input', name: 'body', rows: 1, required: true,
      placeholder: `Message ${conversation.name}`, onkeydown: (e) => this.composerKey(e),
      oninput: () => this.grow(input)});
    const sendError = h('p', {class: 'error', role: 'alert'});
    const composer = h('form', {class: 'composer', onsubmit: (e) => this.send(e)},
        h('label', {for: 'composer-input', class: 'visually-hidden'}, `Message ${conversation.name}`),
        input, h('button', {type: 'submit'}, 'Send'), sendError);
    const header = h('header', {class: 'conversation-header'},
        h('a', {class: 'back', href: '/', onclick: (e) => this.follow(e, '/')}, '‹ Conversations'),
        title,
        h('button', {type: 'button', class: 'quiet danger', 'aria-label': 'Delete conversation',
          onclick: () => this.deleteConversation(conversation.id, deleteError)}, 'Delete'),
        deleteError);
    input.value = draft;
    this.paneView = {conversationId: conversation.id, title, messages, pending, scroller, earlier, empty,
      input, sendError, fresh: true};
    this.pane.replaceChildren(header, scroller, composer);
    if (!matchMedia('(pointer: coarse)').matches) input.focus();
  }

  messageItem(message) {
    let item = this.messageItems.get(message.id);
    if (item) return item;
    const own = message.sender === this.state.me.id;
    const error = h('p', {class: 'error', role: 'alert'});
    item = h('li', {class: own ? 'message own' : 'message', 'data-id': message.id},
        h('div', {class: 'meta'},
            h('span', {class: 'sender'}, this.state.userName(message.sender)), ' ',
            timeNode(message.at),
            own && h('button', {type: 'button', class: 'quiet delete', 'aria-label': 'Delete this message',
              onclick: () => this.deleteMessage(message.id, error)}, 'Delete')),
        append(h('div', {class: 'body'}), bodyNodes(message.body)),
        error);
    this.messageItems.set(message.id, item);
    return item;
  }

  // --- Actions ------------------------------------------------------------

  composerKey(event) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  }

  grow(input) {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  }

  async send(event) {
    event.preventDefault();
    const view = this.paneView;
    const conversationId = this.paneFor;
    const text = view.input.value;
    view.sendError.textContent = '';
    if (!text.trim()) {
      view.sendError.textContent = 'Type a message first.';
      return;
    }
    // The same text sent again after a failure keeps its key: if the first
    // try did commit, the server answers with that message instead of a copy.
    if (this.draft.text !== text) this.draft = {text, key: randomKey()};
    const key = this.draft.key;
    const sending = {key, conversation: conversationId, text, id: null,
      item: h('li', {class: 'message own sending'},
          h('div', {class: 'meta'}, h('span', {class: 'sender'}, this.state.me.name), ' ', h('span', {}, 'sending…')),
          append(h('div', {class: 'body'}), bodyNodes(text)))};
    this.pending.push(sending);
    view.input.value = '';
    this.grow(view.input);
    view.fresh = true;  // scroll to the bottom
    this.queueRender();
    const result = await call('POST', `/api/conversations/${encodeURIComponent(conversationId)}`,
        {body: text}, {'Idempotency-Key': key});
    if (result.ok) {
      this.draft = {text: null, key: null};
      sending.id = result.data.id;
      if (this.state.hasMessage(sending.id)) {
        this.pending = this.pending.filter((p) => p !== sending);
      }
      this.queueRender();
      return;
    }
    this.pending = this.pending.filter((p) => p !== sending);
    this.queueRender();
    if (result.status === 401) return this.app.loggedOut();
    if (this.paneFor === conversationId) {
      if (!this.paneView.input.value) {
        this.paneView.input.value = text;
        this.grow(this.paneView.input);
      }
      this.paneView.sendError.textContent = 'Not sent: ' + explain(result, {
        404: 'this conversation was deleted.',
        400: null,
      }).replace(/^./, (c) => c.toLowerCase());
    }
  }

  async deleteMessage(id, errorNode) {
    errorNode.textContent = '';
    const result = await call('DELETE', `/api/messages/${encodeURIComponent(id)}`);
    if (result.ok) return;  // the stream's event removes it
    if (result.status === 401) return this.app.loggedOut();
    errorNode.textContent = explain(result, {
      404: 'This message was already deleted.',
      403: 'Only the sender can delete a message.',
    });
  }

  async deleteConversation(id, errorNode) {
    errorNode.textContent = '';
    const result = await call('DELETE', `/api/conversations/${encodeURIComponent(id)}`);
    if (result.ok) {
      this.app.navigate('/');
      return;
    }
    if (result.status === 401) return this.app.loggedOut();
    errorNode.textContent = explain(result, {
      409: 'This conversation still has messages, so it cannot be deleted yet. It can be once all its messages are deleted or have expired.',
      404: 'This conversation was already deleted.',
    });
  }

  async createConversation(event) {
    event.preventDefault();
    this.newError.textContent = '';
    const name = this.newName.value;
    const result = await call('POST', '/api/conversations', {name});
    if (result.ok) {
      this.newName.value = '';
      if (!this.state.conversations.has(result.data.id)) this.awaitingId = result.data.id;
      this.app.navigate(`/c/${result.data.id}`);
      return;
    }
    if (result.status === 401) return this.app.loggedOut();
    this.newError.textContent = explain(result, {
      409: `A conversation named “${name.trim()}” already exists.`,
      400: `That name cannot be used: ${result.serverError}. ${NAME_HINT}`,
    });
  }

  closeMenu() {
    this.menu.open = false;
  }

  async logOut() {
    this.closeMenu();
    const result = await call('POST', '/api/auth/logout', {});
    if (result.ok || result.status === 401) return this.app.loggedOut('You have logged out.');
    this.status.textContent = explain(result);
  }

  // Live messages of others: screen readers hear them, and a hidden tab
  // shows a notification if the person allowed it.
  tell(change) {
    const sender = this.state.userName(change.message.sender);
    const open = change.conversation.id === this.openId;
    const text = open ? `${sender}: ${change.message.body.slice(0, 300)}` :
        `New message from ${sender} in ${change.conversation.name}`;
    this.announcer.append(h('p', {}, text));
    while (this.announcer.childElementCount > 5) this.announcer.firstChild.remove();
    if (document.visibilityState === 'hidden') {
      notify(`${sender} in ${change.conversation.name}`, change.message.body.slice(0, 200),
          `/c/${change.conversation.id}`, change.conversation.id);
    }
  }

  async askNotifications() {
    this.closeMenu();
    if (!('Notification' in window)) return;
    await Notification.requestPermission();
    this.notifyButton.hidden = Notification.permission !== 'default';
  }

  // --- Dialogs ------------------------------------------------------------

  dialog(titleText, ...content) {
    const dialog = h('dialog', {'aria-labelledby': 'dialog-title', onclose: () => dialog.remove()},
        h('h2', {id: 'dialog-title'}, titleText), ...content);
    document.body.append(dialog);
    dialog.showModal();
    return dialog;
  }

  async openInvite() {
    const error = h('p', {class: 'error', role: 'alert'});
    const output = h('div', {class: 'invite-link'});
    const close = h('button', {type: 'button', class: 'quiet', onclick: () => dialog.close()}, 'Close');
    const dialog = this.dialog('Invite someone', output, error, h('div', {class: 'buttons'}, close));
    output.append(h('p', {}, 'Creating an invitation…'));
    const result = await call('POST', '/api/invite', {});
    if (!result.ok) {
      clear(output);
      if (result.status === 401) {
        dialog.close();
        return this.app.loggedOut();
      }
      error.textContent = explain(result);
      return;
    }
    const link = `${location.origin}/invite/${result.data.id}`;
    const field = h('input', {id: 'invite-link', readonly: true, value: link, onfocus: () => field.select()});
    const copied = h('span', {class: 'hint', role: 'status'});
    const copy = h('button', {type: 'button', onclick: async () => {
      field.select();
      try {
        await navigator.clipboard.writeText(link);
        copied.textContent = 'Copied.';
      } catch {
        copied.textContent = document.execCommand('copy') ? 'Copied.' : 'Select the link and copy it.';
      }
    }}, 'Copy link');
    output.replaceChildren(
        h('p', {}, 'Send this link to the person you invite. It works once, and not for long.'),
        h('label', {for: 'invite-link'}, 'Invitation link'), field, copy, copied);
    copy.focus();
  }

  openPassword() {
    this.closeMenu();
    const current = h('input', {id: 'password-current', type: 'password', autocomplete: 'current-password', required: true});
    const next = h('input', {id: 'password-new', type: 'password', autocomplete: 'new-password', required: true});
    const again = h('input', {id: 'password-again', type: 'password', autocomplete: 'new-password', required: true});
    const error = h('p', {class: 'error', role: 'alert'});
    const done = h('p', {class: 'hint', role: 'status'});
    const form = h('form', {onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = done.textContent = '';
      if (next.value !== again.value) {
        error.textContent = 'The two new passwords differ.';
        return;
      }
      const result = await call('POST', '/api/password', {password: current.value, to: next.value});
      if (result.ok) {
        form.reset();
        done.textContent = 'Password changed. Every other session of yours was logged out.';
        return;
      }
      if (result.status === 401) {
        dialog.close();
        return this.app.loggedOut();
      }
      error.textContent = explain(result, /current password/i.test(result.serverError) ?
          {400: 'The current password is wrong.'} : {});
    }},
    h('label', {for: 'password-current'}, 'Current password'), current,
    h('label', {for: 'password-new'}, 'New password'), next,
    h('label', {for: 'password-again'}, 'New password again'), again,
    error, done,
    h('div', {class: 'buttons'},
        h('button', {type: 'submit'}, 'Change password'),
        h('button', {type: 'button', class: 'quiet', onclick: () => dialog.close()}, 'Close')));
    const dialog = this.dialog('Change password', form);
    current.focus();
  }
}
