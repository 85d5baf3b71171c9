// Quire's browser client in a real browser against the real server: two
// people chatting, unread counts, hostile message bodies, a server killed and
// restarted, deletions, log out and password changes, the keyboard alone.
import assert from 'node:assert/strict';
import { after, before, beforeEach, afterEach, test } from 'node:test';
import { launchBrowser, newPage, only, screenshot, VIEWPORTS } from './support/browser.js';
import {
  acceptInvitation, createConversation, eventually, expectMessages, invitationLink, logIn,
  openAccountMenu, openConversation, send, setUp, shownMessages, unreadCount, waitLive,
} from './support/chat.js';
import { startServer } from './support/server.js';

let browser;
let server;
const contexts = [];

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});
beforeEach(async () => {
  server = await startServer({ heartbeat: 1 });
});
afterEach(async () => {
  while (contexts.length) await contexts.pop().close();
  await server?.stop();
});

async function person(viewport = VIEWPORTS.desktop) {
  const opened = await newPage(browser, { viewport });
  contexts.push(opened.context);
  return opened;
}

// alice sets the server up and creates `general`; bob joins by invitation.
// Both end with `general` open. Returns both pages.
async function aliceAndBob() {
  const alice = await person(VIEWPORTS.desktop);
  await setUp(alice.page, server, 'alice', 'alice-password-1');
  await createConversation(alice.page, 'general');
  const link = await invitationLink(alice.page);
  assert.match(link, new RegExp(`^${server.url}/invite/I[0-9a-z]{15}$`));
  const bob = await person(VIEWPORTS.phone);
  await acceptInvitation(bob.page, link, 'bob', 'bob-password-1');
  await openConversation(bob.page, 'general');
  return { alice, bob };
}

function noErrors(problems) {
  assert.deepEqual(only(problems, 'pageerror', 'csp', 'crash'), []);
}

test('setup, an invitation accepted, and a message sent in one appears live in the other, in order', async () => {
  const { alice, bob } = await aliceAndBob();
  const expected = [];
  for (let i = 1; i <= 3; i++) {
    await send(alice.page, `alice ${i}`);
    expected.push(`alice ${i}`);
    await send(bob.page, `bob ${i}`);
    expected.push(`bob ${i}`);
  }
  await expectMessages(alice.page, expected);
  await expectMessages(bob.page, expected);
  // Senders are names, and times are shown.
  const senders = await bob.page.locator('.messages > li.message .sender').allTextContents();
  assert.deepEqual(senders, ['alice', 'bob', 'alice', 'bob', 'alice', 'bob']);
  assert.equal(await bob.page.locator('.messages > li.message time[datetime]').count(), 6);
  // /c/ID is a link that survives a reload.
  await bob.page.reload();
  await waitLive(bob.page);
  await bob.page.getByRole('heading', { name: 'general', level: 1 }).waitFor();
  await expectMessages(bob.page, expected);
  await screenshot(alice.page, 'chat-desktop-1280x800');
  await screenshot(bob.page, 'chat-phone-390x844');
  noErrors(alice.problems);
  noErrors(bob.problems);
});

test('unread counts rise in a conversation not open, reset when it is opened, and survive a reload', async () => {
  const { alice, bob } = await aliceAndBob();
  await createConversation(alice.page, 'random');  // alice now has random open
  await send(bob.page, 'one');
  await send(bob.page, 'two');
  await send(bob.page, 'three');
  await eventually(async () => (await unreadCount(alice.page, 'general')) === 3, 'general to show 3 unread');
  assert.equal(await unreadCount(alice.page, 'random'), 0);
  assert.match(await alice.page.title(), /^\(3\) /);

  await alice.page.reload();
  await waitLive(alice.page);
  await eventually(async () => (await unreadCount(alice.page, 'general')) === 3, '3 unread after a reload');
  assert.match(await alice.page.title(), /^\(3\) /);

  await openConversation(alice.page, 'general');
  await expectMessages(alice.page, ['one', 'two', 'three']);
  await eventually(async () => (await unreadCount(alice.page, 'general')) === 0, 'general read once opened');
  assert.doesNotMatch(await alice.page.title(), /^\(/);
  // A message of one's own never counts as unread.
  await send(alice.page, 'mine');
  await openConversation(alice.page, 'random');
  await send(bob.page, 'four');
  await eventually(async () => (await unreadCount(alice.page, 'general')) === 1, 'one new unread');
  await alice.page.reload();
  await waitLive(alice.page);
  await eventually(async () => (await unreadCount(alice.page, 'general')) === 1, 'still one after a reload');
  noErrors(alice.problems);
});

test('markup in a message shows as text and runs nothing; http links are clickable', async () => {
  const { alice, bob } = await aliceAndBob();
  const hostile = [
    '<img src=x onerror="window.__pwned = 1">',
    '<script>window.__pwned = 2</script>',
    '<a href="javascript:window.__pwned=3">click</a> javascript:window.__pwned=4',
    '**bold** <b>bold</b> &lt;b&gt; see https://example.com/a?b=1&c=2.',
  ];
  for (const text of hostile) await send(bob.page, text);
  await expectMessages(alice.page, hostile);
  for (const page of [alice.page, bob.page]) {
    assert.equal(await page.locator('.messages img, .messages script, .messages b').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    const hrefs = await page.locator('.messages a').evaluateAll((links) => links.map((a) => a.href));
    assert.deepEqual(hrefs, ['https://example.com/a?b=1&c=2']);
  }
  const link = alice.page.locator('.messages a');
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.match(await link.getAttribute('rel'), /noopener/);
  noErrors(alice.problems);
  noErrors(bob.problems);
});

test('after the server is killed and restarted, both see every message exactly once, in order', async () => {
  const { alice, bob } = await aliceAndBob();
  const expected = [];
  for (let i = 1; i <= 3; i++) {
    await send(i % 2 ? alice.page : bob.page, `before ${i}`);
    expected.push(`before ${i}`);
  }
  await server.kill('SIGKILL');
  await eventually(async () => (await alice.page.locator('.status').getAttribute('data-state')) !== 'live',
    'alice to notice the server is gone');
  await server.restart();
  await waitLive(alice.page);
  await waitLive(bob.page);
  for (let i = 1; i <= 3; i++) {
    await send(i % 2 ? bob.page : alice.page, `after ${i}`);
    expected.push(`after ${i}`);
  }
  await expectMessages(alice.page, expected);
  await expectMessages(bob.page, expected);
  // And once more with a reload, from a fresh boot.
  await alice.page.reload();
  await waitLive(alice.page);
  await expectMessages(alice.page, expected);
  noErrors(alice.problems);
  noErrors(bob.problems);
});

test('a stream silent for twice the heartbeat is closed and reopened, and continues where it left off', async () => {
  const { alice, bob } = await aliceAndBob();
  await send(alice.page, 'first');
  // The server stops answering (SIGSTOP): no heartbeat arrives.
  process.kill(server.pid, 'SIGSTOP');
  try {
    await eventually(async () => (await bob.page.locator('.status').getAttribute('data-state')) !== 'live',
      'bob to give up on the silent stream', 10000);
  } finally {
    process.kill(server.pid, 'SIGCONT');
  }
  await waitLive(bob.page);
  await send(alice.page, 'second');
  await expectMessages(bob.page, ['first', 'second']);
  noErrors(bob.problems);
});

test('a resume point purged while offline (410) leads to a fresh boot, not a stale view', async () => {
  // Messages expire 6 s after they are sent and leave history 1 s later.
  await server.stop();
  server = await startServer({ heartbeat: 1, args: ['--message-ttl', '6s', '--purge-after', '1s'] });
  const { alice, bob } = await aliceAndBob();
  await send(bob.page, 'soon gone');
  await expectMessages(alice.page, ['soon gone']);
  let boots = 0;
  alice.page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/api/boot') boots += 1;
  });
  // alice goes offline for the stream: her connection breaks and cannot come back.
  await alice.page.route('**/api/events*', (route) => route.abort());
  await server.kill('SIGKILL');
  await server.restart();
  await eventually(async () => (await alice.page.locator('.status').getAttribute('data-state')) !== 'live',
    'alice to lose her stream');
  // Meanwhile the message expires and is purged: her resume point is gone.
  await expectMessages(bob.page, [], 20000);
  await bob.page.waitForTimeout(1500);  // past --purge-after
  await alice.page.unroute('**/api/events*');
  await eventually(async () => boots > 0, 'alice to boot again after the 410', 20000);
  await waitLive(alice.page);
  await expectMessages(alice.page, []);
  await send(bob.page, 'after the purge');
  await expectMessages(alice.page, ['after the purge']);
  noErrors(alice.problems);
});

test('deleting a message and a conversation shows live in the other browser; a conversation with messages is refused in a sentence', async () => {
  const { alice, bob } = await aliceAndBob();
  await send(bob.page, 'keep me');
  await send(bob.page, 'delete me');
  await expectMessages(alice.page, ['keep me', 'delete me']);
  // Only one's own messages have a Delete button.
  assert.equal(await alice.page.getByRole('button', { name: 'Delete this message' }).count(), 0);
  await bob.page.locator('li.message', { hasText: 'delete me' }).getByRole('button', { name: 'Delete this message' }).click();
  await expectMessages(alice.page, ['keep me']);
  await expectMessages(bob.page, ['keep me']);

  await alice.page.getByRole('button', { name: 'Delete conversation' }).click();
  const refusal = alice.page.locator('.conversation-header .error');
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /still has messages/);
  assert.doesNotMatch(await refusal.textContent(), /409/);

  await bob.page.locator('li.message', { hasText: 'keep me' }).getByRole('button', { name: 'Delete this message' }).click();
  await expectMessages(alice.page, []);
  await alice.page.getByRole('button', { name: 'Delete conversation' }).click();
  await bob.page.getByText('This conversation does not exist, or it was deleted.').waitFor();
  await eventually(async () => (await bob.page.locator('.conversation-list li').count()) === 0,
    'the conversation to leave bob\'s list');
  noErrors(alice.problems);
  noErrors(bob.problems);
});

test('logging out in one tab shows the login screen in the other; a password change logs out the other sessions', async () => {
  const { alice, bob } = await aliceAndBob();
  // bob has a second tab in the same browser.
  const bobTab = await bob.context.newPage();
  bob.context.watchPage(bobTab);
  await bobTab.goto(`${server.url}/`);
  await waitLive(bobTab);
  await openAccountMenu(bob.page);
  await bob.page.getByRole('button', { name: 'Log out' }).click();
  await bob.page.getByRole('heading', { name: 'Log in to Quire' }).waitFor();
  await bobTab.getByRole('heading', { name: 'Log in to Quire' }).waitFor();

  // alice logged in on a second device changes her password on the first.
  const aliceElsewhere = await person(VIEWPORTS.phone);
  await logIn(aliceElsewhere.page, server, 'alice', 'alice-password-1');
  await openAccountMenu(alice.page);
  await alice.page.getByRole('button', { name: 'Change password' }).click();
  await alice.page.getByLabel('Current password').fill('wrong password');
  await alice.page.getByLabel('New password', { exact: true }).fill('alice-password-2');
  await alice.page.getByLabel('New password again').fill('alice-password-2');
  await alice.page.getByRole('button', { name: 'Change password' }).click();
  await alice.page.getByText('The current password is wrong.').waitFor();
  await alice.page.getByLabel('Current password').fill('alice-password-1');
  await alice.page.getByRole('button', { name: 'Change password' }).click();
  await alice.page.getByText('Password changed.', { exact: false }).waitFor();
  await aliceElsewhere.page.getByRole('heading', { name: 'Log in to Quire' }).waitFor();
  // The first device stays logged in and live.
  await alice.page.keyboard.press('Escape');
  await send(alice.page, 'still here');
  await logIn(aliceElsewhere.page, server, 'alice', 'alice-password-2', '/');
  noErrors(alice.problems);
});

test('a message of someone else arriving while the tab is hidden shows a notification, once allowed', async () => {
  const { alice, bob } = await aliceAndBob();
  await alice.context.grantPermissions(['notifications'], { origin: server.url });
  // Record what would be shown, by the service worker or the page itself,
  // and let the page believe it is hidden.
  await alice.page.evaluate(() => {
    window.__shown = [];
    const record = (title, options) => window.__shown.push({ title, body: options && options.body });
    ServiceWorkerRegistration.prototype.showNotification = function (title, options) {
      record(title, options);
      return Promise.resolve();
    };
    window.Notification = class extends window.Notification {
      constructor(title, options) {
        record(title, options);
        super(title, options);
      }
    };
    Object.defineProperty(document, 'visibilityState', { get: () => 'hidden', configurable: true });
  });
  await send(alice.page, 'my own: no notification');
  await send(bob.page, 'are you there?');
  await eventually(() => alice.page.evaluate(() => window.__shown.length > 0), 'a notification');
  await alice.page.waitForTimeout(200);
  assert.deepEqual(await alice.page.evaluate(() => window.__shown),
    [{ title: 'bob in general', body: 'are you there?' }]);
});

test('the keyboard alone logs in, opens a conversation and sends; Shift+Enter makes a new line', async () => {
  const { alice } = await aliceAndBob();
  await createConversation(alice.page, 'random');
  const keyboard = await person(VIEWPORTS.desktop);
  const page = keyboard.page;
  await page.goto(`${server.url}/`);
  await page.getByRole('heading', { name: 'Log in to Quire' }).waitFor();
  await page.keyboard.type('alice');   // the name field has focus
  await page.keyboard.press('Tab');
  await page.keyboard.type('alice-password-1');
  await page.keyboard.press('Enter');
  await waitLive(page);
  // Tab to the conversation named "general" and open it.
  for (let i = 0; i < 20; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
    if (focused === 'general') break;
  }
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'general', level: 1 }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
  await page.keyboard.type('line one');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('line two');
  await page.keyboard.press('Enter');
  await expectMessages(page, ['line one\nline two']);
  await expectMessages(alice.page, []);  // alice has random open
  await openConversation(alice.page, 'general');
  await expectMessages(alice.page, ['line one\nline two']);
  noErrors(keyboard.problems);
});
