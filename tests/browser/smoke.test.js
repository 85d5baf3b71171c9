// Smoke test of the harness: the real server, the real client, headless Chromium.
// Asserts only what holds for any page the server serves at /.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, newPage, only, screenshot, settle, VIEWPORTS } from './support/browser.js';
import { startServer } from './support/server.js';

let server;
let browser;

before(async () => {
  [server, browser] = await Promise.all([startServer(), launchBrowser()]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

for (const [name, viewport] of Object.entries(VIEWPORTS)) {
  test(`/ loads with a CSP and without errors (${name} ${viewport.width}x${viewport.height})`, async () => {
    const { context, page, problems } = await newPage(browser, { viewport });
    try {
      const response = await page.goto(`${server.url}/`);
      assert.equal(response.status(), 200, `GET / answered ${response.status()}`);
      const headers = await response.allHeaders();
      assert.ok(headers['content-security-policy'], `no Content-Security-Policy header: ${JSON.stringify(headers)}`);
      assert.match(await page.title(), /Quire/);
      await settle(page);
      await screenshot(page, `smoke-${name}`);
      // Console errors are not asserted here: a client may well log a failed
      // (non-2xx) API call on a server that is not set up yet.
      assert.deepEqual(only(problems, 'pageerror', 'csp', 'crash'), [], 'page errors or CSP violations');
    } finally {
      await context.close();
    }
  });
}

test('after SIGKILL, restart() serves on the same port again', async (t) => {
  const { context, page } = await newPage(browser);
  try {
    assert.equal((await page.goto(`${server.url}/`)).status(), 200);
    const port = server.port;
    const started = performance.now();
    const exit = await server.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    await server.restart();
    const ms = Math.round(performance.now() - started);
    t.diagnostic(`kill -9 + restart took ${ms} ms`);
    assert.equal(server.port, port);
    assert.ok(ms < 10000, `kill -9 + restart took ${ms} ms`);
    assert.equal((await page.reload()).status(), 200);
  } finally {
    await context.close();
  }
});
