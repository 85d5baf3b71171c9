// What a person does in Quire's client, as steps for the browser tests. Each
// step waits for what a person would wait for (the chat to appear, a message
// to show), never for a fixed time.
import assert from 'node:assert/strict';

export const LIVE = '.status[data-state=live]';

// The texts of the messages shown in the open conversation (sent ones, not
// those still "sending…"), oldest first.
export function shownMessages(page) {
  return page.locator('.messages:not(.pending) > li.message .body').allTextContents();
}

// Waits until the open conversation shows exactly `expected` (in that order),
// then asserts it, so a failure shows the difference.
export async function expectMessages(page, expected, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let shown = await shownMessages(page);
  while (JSON.stringify(shown) !== JSON.stringify(expected) && Date.now() < deadline) {
    await page.waitForTimeout(50);
    shown = await shownMessages(page);
  }
  assert.deepEqual(shown, expected, `messages shown on ${page.url()}`);
}

// Waits until fn() (evaluated in Node) returns a truthy value.
export async function eventually(fn, what, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function waitLive(page) {
  await page.locator(LIVE).waitFor({ timeout: 20000 });
}

async function fillCredentials(page, name, password, button) {
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: button }).click();
}

// First run: the setup screen creates the first account and lands in the chat.
export async function setUp(page, server, name, password) {
  await page.goto(`${server.url}/`);
  await page.getByRole('heading', { name: 'Welcome to Quire' }).waitFor();
  await fillCredentials(page, name, password, 'Create account');
  await waitLive(page);
}

export async function logIn(page, server, name, password, path = '/') {
  await page.goto(`${server.url}${path}`);
  await page.getByRole('heading', { name: 'Log in to Quire' }).waitFor();
  await fillCredentials(page, name, password, 'Log in');
  await waitLive(page);
}

// Creates an invitation from the chat and returns its link.
export async function invitationLink(page) {
  await page.getByRole('button', { name: 'Invite' }).click();
  const field = page.getByLabel('Invitation link');
  await field.waitFor();
  const link = await field.inputValue();
  await page.getByRole('button', { name: 'Close' }).click();
  return link;
}

export async function acceptInvitation(page, link, name, password) {
  await page.goto(link);
  await page.getByRole('heading', { name: 'Join Quire' }).waitFor();
  await fillCredentials(page, name, password, 'Join');
  await waitLive(page);
}

export async function createConversation(page, name) {
  await page.getByLabel('New conversation name').fill(name);
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
  return page.url().split('/c/')[1];
}

export async function openConversation(page, name) {
  await page.locator('.conversation-list a', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) }).click();
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

// Types a message into the open conversation and sends it with Enter; waits
// until it shows as sent (its event came back through the stream).
export async function send(page, text) {
  const box = page.locator('#composer-input');
  await box.fill(text);
  await box.press('Enter');
  await page.locator('.messages:not(.pending) > li.message .body', { hasText: text }).last().waitFor();
}

// The unread count shown for a conversation in the list (0 when none shown).
export async function unreadCount(page, name) {
  const item = page.locator('.conversation-list a', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });
  const badge = item.locator('.unread');
  if (!(await badge.isVisible())) return 0;
  return Number(await badge.textContent());
}

export async function openAccountMenu(page) {
  await page.locator('.menu summary').click();
}
