// Quire's browser client: which screen to show, and the one Connection that
// keeps the chat screen in step with the server.
//
// Paths: /            the chat, no conversation open
//        /c/ID        the chat with conversation ID open (shareable)
//        /invite/ID   accepting an invitation

import {showInvitation, showLogin, showSetup} from './auth.js';
import {ChatView} from './chat.js';
import {Connection} from './connection.js';
import {h} from './dom.js';
import {registerServiceWorker} from './notify.js';

const root = document.getElementById('app');
let connection = null;
let chat = null;

const app = {
  root,
  navigate(path) {
    if (path !== location.pathname) history.pushState(null, '', path);
    route();
  },
  // The session ended (logged out here or elsewhere, or its password changed).
  loggedOut(notice) {
    stopChat();
    showLogin(root, () => startChat(), notice || 'Your session has ended. Please log in again.');
  },
};

function conversationInPath() {
  const match = /^\/c\/([^/]+)\/?$/.exec(location.pathname);
  return match ? decodeURIComponent(match[1]) : null;
}

function route() {
  const invite = /^\/invite\/([^/]+)\/?$/.exec(location.pathname);
  if (invite) {
    stopChat();
    showInvitation(root, decodeURIComponent(invite[1]), () => {
      history.replaceState(null, '', '/');
      startChat();
    });
    return;
  }
  if (chat) {
    chat.show(conversationInPath());
    return;
  }
  if (!connection) startChat();
}

function startChat() {
  stopChat();
  root.replaceChildren(h('main', {class: 'center'}, h('p', {class: 'card', role: 'status'}, 'Loading…')));
  const loading = root.querySelector('[role=status]');
  connection = new Connection({
    onBoot(data) {
      if (!chat) chat = new ChatView(app);
      chat.boot(data);
      chat.show(conversationInPath());
    },
    onEvent(seq, event) {
      chat.event(event);
    },
    onLoggedOut() {
      const hadChat = chat !== null;
      stopChat();
      showLogin(root, () => startChat(), hadChat ? 'Your session has ended. Please log in again.' : null);
    },
    onNotSetUp() {
      stopChat();
      showSetup(root, () => startChat());
    },
    onStatus(status) {
      if (chat) chat.setStatus(status);
      else if (status === 'offline') loading.textContent = 'The server cannot be reached. Retrying…';
    },
  });
  connection.start();
}

function stopChat() {
  if (connection) connection.stop();
  connection = null;
  if (chat) chat.destroy();
  chat = null;
}

window.addEventListener('popstate', route);
window.addEventListener('quire:navigate', (event) => app.navigate(event.detail));
registerServiceWorker();
route();
