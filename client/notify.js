// Notifications for new messages while the tab is hidden, when the person
// allowed them. Through the service worker where there is one (phones only
// show notifications that way), else with the page's own Notification.

let registration = null;

export function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('/sw.js').then((r) => {
    registration = r;
  }, () => {
    registration = null;  // not fatal: the app works without it
  });
  navigator.serviceWorker.addEventListener('message', (event) => {
    if (event.data && typeof event.data.open === 'string' && event.data.open.startsWith('/')) {
      window.dispatchEvent(new CustomEvent('quire:navigate', {detail: event.data.open}));
    }
  });
}

export function notify(title, body, path, tag) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const options = {body, tag, data: {url: path}};
  if (registration) {
    registration.showNotification(title, options).catch(() => {});
    return;
  }
  try {
    const notification = new Notification(title, options);
    notification.onclick = () => {
      window.focus();
      window.dispatchEvent(new CustomEvent('quire:navigate', {detail: path}));
      notification.close();
    };
  } catch {
    // some browsers only allow notifications from a service worker
  }
}
