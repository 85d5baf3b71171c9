// What the client knows: users, live conversations and their live messages,
// built from boot's events and kept up to date by the stream's. Boot lists
// events without their sequence numbers, so nothing here depends on them:
// order is the order events were applied in, which is sequence order (the
// Connection applies each once, in order). Deleted things are dropped, never
// shown.

export class ChatState {
  constructor(login) {
    this.me = login;  // {id, name}
    this.position = 0;  // events applied so far
    this.users = new Map();          // user id -> name
    this.conversations = new Map();  // conversation id -> Conversation
    this.messagesById = new Map();   // live message id -> message
  }

  // Applies the next event of the history; returns what changed, for the
  // view: {kind: 'message'|'message-deleted'|'conversation'|
  // 'conversation-deleted'|'user', ...}, or null when nothing did (a deleted
  // entity's tombstone, an unknown kind of event).
  apply(event) {
    const position = ++this.position;
    const live = !event.deleted_at;
    switch (`${event.type} ${event.event}`) {
      case 'user created':
        this.users.set(event.id, event.name);
        return {kind: 'user', id: event.id};
      case 'conversation created': {
        if (!live) return null;
        const conversation = new Conversation(event.id, event.name, position);
        this.conversations.set(event.id, conversation);
        return {kind: 'conversation', conversation};
      }
      case 'conversation deleted': {
        const conversation = this.conversations.get(event.id);
        if (!conversation) return null;
        this.conversations.delete(event.id);
        for (const message of conversation.messages) this.messagesById.delete(message.id);
        return {kind: 'conversation-deleted', conversation};
      }
      case 'message sent': {
        const conversation = this.conversations.get(event.conversation);
        if (!live || !conversation) return null;
        const message = {
          id: event.id,
          position,
          conversation: conversation.id,
          sender: event.sender,
          body: event.body,
          at: event.at,
          deleted: false,
        };
        conversation.add(message);
        this.messagesById.set(message.id, message);
        return {kind: 'message', conversation, message};
      }
      case 'message deleted': {
        const message = this.messagesById.get(event.id);
        if (!message) return null;
        this.messagesById.delete(event.id);
        const conversation = this.conversations.get(message.conversation);
        conversation.remove(message);
        return {kind: 'message-deleted', conversation, message};
      }
      default:
        return null;  // a kind of event this client does not know yet
    }
  }

  userName(id) {
    return this.users.get(id) ?? 'someone';
  }

  hasMessage(id) {
    return this.messagesById.has(id);
  }
}

// One live conversation. Messages are kept in sequence order; a deletion
// marks the message and the array is compacted now and then, so that a sweep
// deleting thousands of messages stays linear.
export class Conversation {
  constructor(id, name, createdPosition) {
    this.id = id;
    this.name = name;
    this.activity = createdPosition;  // position of its newest message, or of its creation
    this.messages = [];
    this.deletedCount = 0;
  }

  add(message) {
    this.messages.push(message);
    this.activity = message.position;
  }

  remove(message) {
    message.deleted = true;
    this.deletedCount += 1;
    if (this.deletedCount > 64 && this.deletedCount * 2 > this.messages.length) {
      this.messages = this.messages.filter((m) => !m.deleted);
      this.deletedCount = 0;
    }
  }

  get liveCount() {
    return this.messages.length - this.deletedCount;
  }

  // The newest `count` live messages, oldest first.
  newest(count) {
    const out = [];
    for (let i = this.messages.length - 1; i >= 0 && out.length < count; i--) {
      if (!this.messages[i].deleted) out.push(this.messages[i]);
    }
    return out.reverse();
  }

  newestMessage() {
    for (let i = this.messages.length - 1; i >= 0; i--) {
      if (!this.messages[i].deleted) return this.messages[i];
    }
    return null;
  }

  // Live messages of others after the marker {id, at} (see ReadMarkers).
  unreadAfter(marker, me, isLive) {
    const byId = marker.id !== null && isLive(marker.id);
    let count = 0;
    for (let i = this.messages.length - 1; i >= 0; i--) {
      const m = this.messages[i];
      if (byId ? m.id === marker.id : m.at <= marker.at) break;
      if (!m.deleted && m.sender !== me) count += 1;
    }
    return count;
  }
}

// The last message read per conversation, in localStorage so that unread
// counts survive a reload, per user. A marker is {id, at} of the newest
// message when the conversation was last seen: messages after it are unread;
// if that message was deleted since, the ones sent after its time are.
// Conversations never seen on this browser: on the first boot here,
// everything up to it counts as read (`initial`); a conversation created later
// starts with nothing read.
export class ReadMarkers {
  constructor(userId, state) {
    this.key = `quire.read.${userId}`;
    this.seen = null;
    try {
      const stored = JSON.parse(localStorage.getItem(this.key) || 'null');
      if (stored && stored.version === 1 && stored.seen && typeof stored.seen === 'object') {
        this.seen = stored.seen;
      }
    } catch {
      this.seen = null;
    }
    if (!this.seen) {
      this.seen = {};
      for (const conversation of state.conversations.values()) this.markRead(conversation);
      this.save();
    }
  }

  marker(conversationId) {
    return this.seen[conversationId] || {id: null, at: ''};
  }

  // Marks everything in the conversation read; true when the marker moved.
  markRead(conversation) {
    const newest = conversation.newestMessage();
    const marker = newest ? {id: newest.id, at: newest.at} : {id: null, at: ''};
    const old = this.seen[conversation.id];
    if (old && old.id === marker.id && old.at === marker.at) return false;
    if (!newest && old) return false;  // its messages were deleted: keep the old marker
    this.seen[conversation.id] = marker;
    this.save();
    return true;
  }

  forget(conversationId) {
    if (!(conversationId in this.seen)) return;
    delete this.seen[conversationId];
    this.save();
  }

  // Another tab of this browser moved a marker.
  reload() {
    try {
      const stored = JSON.parse(localStorage.getItem(this.key) || 'null');
      if (stored && stored.version === 1 && stored.seen) this.seen = stored.seen;
    } catch {
      // keep what we have
    }
  }

  save() {
    try {
      localStorage.setItem(this.key, JSON.stringify({version: 1, seen: this.seen}));
    } catch {
      // storage full or disabled: counts then last only until a reload
    }
  }
}
