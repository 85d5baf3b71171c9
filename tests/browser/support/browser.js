// Headless Chromium (Debian's /usr/bin/chromium) through playwright-core, and
// what every browser test wants: a page whose errors are collected, and
// screenshots a person can look at.
//
//   import { launchBrowser, newPage, screenshot, settle, VIEWPORTS } from './support/browser.js';
//   const browser = await launchBrowser();
//   const { page, problems } = await newPage(browser, { viewport: VIEWPORTS.phone });
//   await page.goto(server.url + '/');
//   await settle(page);
//   assert.deepStrictEqual(problems, []);
//   await screenshot(page, 'home-phone');       // $QUIRE_SCREENSHOT_DIR/home-phone.png
//   await browser.close();
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { REPO_ROOT } from './server.js';

export const CHROMIUM = process.env.QUIRE_CHROMIUM || '/usr/bin/chromium';
export const SCREENSHOT_DIR = process.env.QUIRE_SCREENSHOT_DIR || join(REPO_ROOT, 'build', 'screenshots');

// --no-sandbox: tests run as root. The rest: nothing but the test server is
// reachable, so no background traffic, updates or QUIC.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const VIEWPORTS = {
  phone: { width: 390, height: 844 },
  desktop: { width: 1280, height: 800 },
};

// Launches headless Chromium; options are passed on to chromium.launch().
export function launchBrowser(options = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    ...options,
    args: [...CHROMIUM_ARGS, ...(options.args || [])],
  });
}

// The init script reports every CSP violation of every document in the
// context through an exposed binding (neither is subject to the page's CSP).
const CSP_BINDING = '__quireCspViolation';
const CSP_SCRIPT = `(() => {
  const report = (e) => window.${CSP_BINDING}({
    directive: e.violatedDirective, blocked: e.blockedURI,
    source: e.sourceFile, line: e.lineNumber, sample: e.sample,
  });
  document.addEventListener('securitypolicyviolation', report);
})();`;

// Collects into `problems` (strings, so an assertion failure reads well):
//   'pageerror: ...'       uncaught exceptions and unhandled rejections
//   'console.error: ...'   console.error(), failed resource loads, CSP reports
//   'csp: ...'             securitypolicyviolation events (after watchContext)
//   'crash: ...'           the renderer crashed
// of every page of the context, present and future. Returns `problems`.
export async function watchContext(context, problems = []) {
  await context.exposeBinding(CSP_BINDING, ({ page }, v) => {
    problems.push(`csp: ${v.directive} blocked ${v.blocked || '(inline)'} at ${v.source}:${v.line}` +
      (v.sample ? ` "${v.sample}"` : '') + ` on ${page.url()}`);
  });
  await context.addInitScript(CSP_SCRIPT);
  const watched = new WeakSet();
  const attach = (page) => {
    if (watched.has(page)) return;
    watched.add(page);
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.stack || e.message || e}`));
    page.on('console', (m) => {
      if (m.type() === 'error') {
        const l = m.location();
        problems.push(`console.error: ${m.text()}${l && l.url ? ` (${l.url}:${l.lineNumber})` : ''}`);
      }
    });
    page.on('crash', () => problems.push(`crash: ${page.url()}`));
  };
  context.pages().forEach(attach);
  context.on('page', attach);
  context.watchPage = attach;
  return problems;
}

// The problems of the given kinds only: only(problems, 'pageerror', 'csp', 'crash')
// leaves out console errors (among them the browser's own "Failed to load
// resource: ... status of 401" for every non-2xx fetch).
export function only(problems, ...kinds) {
  return problems.filter((p) => kinds.some((k) => p.startsWith(`${k}:`)));
}

// A new context (own cookies and storage) with one page, watched.
// options: viewport (default VIEWPORTS.desktop), anything else for
// browser.newContext(). Returns { context, page, problems }.
export async function newPage(browser, options = {}) {
  const { viewport = VIEWPORTS.desktop, ...contextOptions } = options;
  const context = await browser.newContext({ viewport, ...contextOptions });
  const problems = await watchContext(context);
  const page = await context.newPage();
  context.watchPage(page);
  return { context, page, problems };
}

// Lets late errors of a just-loaded page arrive: two animation frames and ms milliseconds.
export async function settle(page, ms = 300) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.waitForTimeout(ms);
}

// Writes SCREENSHOT_DIR/<name>.png (the viewport; options.fullPage for the
// whole page; other page.screenshot() options pass on). Returns the path.
export async function screenshot(page, name, options = {}) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name.replace(/[^\w.-]+/g, '_')}.png`);
  await page.screenshot({ ...options, path });
  return path;
}
