// Quire's service worker: it exists so that the app can be installed and can
// show notifications. It caches nothing and does not touch requests: the page
// always talks to the server itself.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const path = event.notification.data && event.notification.data.url || '/';
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({type: 'window', includeUncontrolled: true});
    for (const client of windows) {
      if ('focus' in client) {
        await client.focus();
        client.postMessage({open: path});
        return;
      }
    }
    await self.clients.openWindow(path);
  })());
});
