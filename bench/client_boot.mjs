// bench/client_boot.mjs — the browser client on a large history: how long
// headless Chromium takes from navigation to showing a conversation, and
// whether the page freezes meanwhile (long tasks), for a boot of N events.
//
//   node bench/client_boot.mjs [--events 100000] [--conversations 10] [--quire build/quire]
//
// Seeds a fresh SQLite database through the HTTP API (64 senders in flight),
// then loads the client three times (cold, then reloads) and prints one JSON
// line per load: ms to the first message shown, the longest task, the total
// time in tasks over 50 ms, and the JS heap. Needs `npm ci --prefix
// tests/browser` (playwright-core) and /usr/bin/chromium; stops everything it
// started.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const events = Number(arg('events', 100000));
const conversationCount = Number(arg('conversations', 10));
const bin = arg('quire', new URL('../build/quire', import.meta.url).pathname);

const dir = mkdtempSync(join(tmpdir(), 'quire-client-boot-'));
const server = spawn(bin, ['serve', '--database-url', `sqlite:${dir}/quire.db`, '--port', '0'],
  { stdio: ['ignore', 'pipe', 'inherit'] });
const stop = () => {
  server.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', stop);
const url = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (d) => {
    out += d;
    const m = /quire listening on (\S+)/.exec(out);
    if (m) resolve(m[1]);
  });
  server.on('exit', () => reject(new Error('quire exited')));
});

async function api(method, path, body, cookie) {
  const headers = { 'Content-Type': 'application/json' };
  if (cookie) headers.Cookie = cookie;
  const r = await fetch(url + path, { method, headers, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return { json: await r.json(), cookie: (r.headers.get('set-cookie') || '').split(';')[0] };
}

// Seed: setup (1 event), conversations, then messages round-robin.
const started = Date.now();
const { cookie } = await api('POST', '/api/setup', { name: 'alice', password: 'alice-password' });
const conversations = [];
for (let i = 0; i < conversationCount; i++) {
  conversations.push((await api('POST', '/api/conversations', { name: `room ${i}` }, cookie)).json.id);
}
let next = 0;
const messages = events - 1 - conversationCount;
async function sender() {
  while (next < messages) {
    const n = next++;
    await api('POST', `/api/conversations/${conversations[n % conversationCount]}`,
      { body: `message ${n}: the quick brown fox jumps over the lazy dog` }, cookie);
  }
}
await Promise.all(Array.from({ length: 64 }, sender));
console.error(`seeded ${events} events in ${((Date.now() - started) / 1000).toFixed(1)} s`);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--enable-precise-memory-info'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
await context.addCookies([{ name: 'identity', value: cookie.split('=')[1], url }]);
await context.addInitScript(() => {
  window.__longTasks = [];
  new PerformanceObserver((list) => window.__longTasks.push(...list.getEntries().map((e) => e.duration)))
    .observe({ type: 'longtask', buffered: true });
});
const page = await context.newPage();
for (let run = 0; run < 3; run++) {
  const t0 = Date.now();
  await page.goto(`${url}/c/${conversations[0]}`);
  await page.locator('.messages > li.message').first().waitFor({ timeout: 120000 });
  const shownMs = Date.now() - t0;
  await page.waitForTimeout(500);
  const m = await page.evaluate(() => ({
    longest: Math.max(0, ...window.__longTasks),
    blocked: window.__longTasks.reduce((a, d) => a + d - 50, 0),
    heap: performance.memory ? performance.memory.usedJSHeapSize : null,
    rendered: document.querySelectorAll('.messages > li').length,
  }));
  console.log(JSON.stringify({
    events, conversations: conversationCount, load: run === 0 ? 'first' : 'reload',
    first_message_ms: shownMs, longest_task_ms: Math.round(m.longest),
    blocking_ms: Math.round(m.blocked), js_heap_mib: m.heap && +(m.heap / 2 ** 20).toFixed(1),
    messages_rendered: m.rendered,
  }));
}
await browser.close();
stop();
process.exit(0);
