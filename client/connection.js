// Boot, then the event stream, for as long as the page lives: the one place
// that keeps the client's history equal to the server's.
//
// - A boot gives the state up to its resume point; the browser's EventSource
//   continues after it and, when it reconnects by itself, sends
//   Last-Event-ID (the last event it delivered).
// - Events at or below the last applied sequence are ignored (never twice);
//   the stream only ever continues from the last applied one (never a gap).
// - A stream silent for longer than twice the heartbeat is closed and opened
//   again from the last applied sequence.
// - A stream the server refused (401 logged out, 410 purged past us, 400
//   resume point unknown after a restore) ends in a fresh boot, whose answer
//   decides: a new state, the login screen or a retry.

import {call, isNotSetUp} from './api.js';

export class Connection {
  // handlers: onBoot(bootData), onEvent(seq, event), onLoggedOut(),
  // onNotSetUp(), onStatus('connecting'|'live'|'reconnecting'|'offline')
  constructor(handlers) {
    this.handlers = handlers;
    this.source = null;
    this.lastSeq = 0;
    this.heartbeatMs = 30000;
    this.lastActivity = 0;
    this.watchdog = null;
    this.retryTimer = null;
    this.retryDelay = 1000;
    this.stopped = false;
  }

  // Boots and opens the stream. Resolves once the first boot was answered
  // (whatever the answer), so the caller can show a screen.
  async start() {
    await this.boot();
  }

  stop() {
    this.stopped = true;
    this.closeStream();
    clearTimeout(this.retryTimer);
    clearInterval(this.watchdog);
  }

  async boot() {
    this.closeStream();
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    const result = await call('GET', '/api/boot');
    if (this.stopped) return;
    if (result.ok) {
      this.retryDelay = 1000;
      this.lastSeq = result.data.resume_point;
      this.heartbeatMs = Math.max(1, Number(result.data.heartbeat) || 30) * 1000;
      this.handlers.onBoot(result.data);
      this.openStream();
    } else if (result.status === 401) {
      this.stop();
      this.handlers.onLoggedOut();
    } else if (isNotSetUp(result)) {
      this.stop();
      this.handlers.onNotSetUp();
    } else {
      // No answer, or the database is unavailable: try again, slower each time.
      this.handlers.onStatus('offline');
      this.retryLater(() => this.boot());
    }
  }

  retryLater(action) {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(action, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 15000);
  }

  openStream() {
    this.closeStream();
    if (this.stopped) return;
    const source = new EventSource(`/api/events?resume_point=${this.lastSeq}`);
    this.source = source;
    this.lastActivity = Date.now();
    this.handlers.onStatus('connecting');
    source.onopen = () => {
      this.lastActivity = Date.now();
      this.retryDelay = 1000;
      this.handlers.onStatus('live');
    };
    source.onmessage = (message) => {
      if (source !== this.source) return;
      this.lastActivity = Date.now();
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === 'heartbeat') return;
      const seq = Number(message.lastEventId);
      if (!Number.isSafeInteger(seq) || seq <= this.lastSeq) return;
      this.lastSeq = seq;
      this.handlers.onEvent(seq, event);
    };
    source.onerror = () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused, not just dropped: find out why with a boot.
        this.closeStream();
        this.handlers.onStatus('reconnecting');
        this.retryLater(() => this.boot());
      } else {
        this.handlers.onStatus('reconnecting');
      }
    };
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => this.checkSilence(), Math.min(1000, this.heartbeatMs / 2));
  }

  checkSilence() {
    if (!this.source) return;
    if (Date.now() - this.lastActivity > 2 * this.heartbeatMs) {
      this.handlers.onStatus('reconnecting');
      this.openStream();  // from the last applied sequence
    }
  }

  closeStream() {
    clearInterval(this.watchdog);
    this.watchdog = null;
    if (this.source) {
      this.source.onopen = this.source.onmessage = this.source.onerror = null;
      this.source.close();
      this.source = null;
    }
  }
}
