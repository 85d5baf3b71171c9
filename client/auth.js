// The screens before the chat: first-run setup, login, and accepting an
// invitation. Each is one form; every failure is a sentence under it.

import {call, explain} from './api.js';
import {h} from './dom.js';

const NAME_RULES = 'Names are 1 to 63 characters, without control characters, spaces at either end or double spaces.';

// A card with a title, an optional lead paragraph and a name + password form.
// submit(name, password) resolves to an API result; onDone(result) runs on
// success.
function credentialsForm({root, title, lead, button, passwordAutocomplete, submit, sentences, onDone, notice}) {
  const name = h('input', {id: 'name', name: 'name', autocomplete: 'username', required: true, maxlength: 200, autocapitalize: 'none', spellcheck: 'false'});
  const password = h('input', {id: 'password', name: 'password', type: 'password', autocomplete: passwordAutocomplete, required: true});
  const error = h('p', {class: 'error', role: 'alert'});
  const submitButton = h('button', {type: 'submit'}, button);
  const form = h('form', {class: 'card', onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    submitButton.disabled = true;
    const result = await submit(name.value, password.value);
    submitButton.disabled = false;
    if (result.ok) return onDone(result);
    error.textContent = explain(result, sentences(result));
    (result.status === 409 || result.status === 400 ? name : password).focus();
  }},
  h('h1', {}, title),
  notice && h('p', {class: 'notice', role: 'status'}, notice),
  lead && h('p', {}, lead),
  h('label', {for: 'name'}, 'Name'), name,
  h('label', {for: 'password'}, 'Password'), password,
  error,
  submitButton);
  root.replaceChildren(h('main', {class: 'center'}, form));
  document.title = `${title} · Quire`;
  name.focus();
}

export function showSetup(root, onDone) {
  credentialsForm({
    root,
    title: 'Welcome to Quire',
    lead: 'Nobody uses this server yet. Create the first account; you can invite others from the chat.',
    button: 'Create account',
    passwordAutocomplete: 'new-password',
    submit: (name, password) => call('POST', '/api/setup', {name, password}),
    sentences: (r) => ({
      409: 'This server has been set up already. Reload the page to log in.',
      400: `${explain({...r, status: -1})} ${/name/i.test(r.serverError) ? NAME_RULES : ''}`.trim(),
    }),
    onDone,
  });
}

export function showLogin(root, onDone, notice) {
  credentialsForm({
    root,
    title: 'Log in to Quire',
    notice,
    button: 'Log in',
    passwordAutocomplete: 'current-password',
    submit: (name, password) => call('POST', '/api/auth/login', {name, password}),
    sentences: () => ({401: 'That name and password do not match an account.'}),
    onDone,
  });
}

// The invitation screen: who invited, then a name and password to join.
export async function showInvitation(root, id, onDone) {
  root.replaceChildren(h('main', {class: 'center'}, h('p', {class: 'card'}, 'Opening the invitation…')));
  const invitation = await call('GET', `/api/invite/${encodeURIComponent(id)}`);
  if (!invitation.ok) {
    const text = explain(invitation, {
      404: 'This invitation does not exist, was used already or has expired. Ask for a new one.',
    });
    root.replaceChildren(h('main', {class: 'center'}, h('div', {class: 'card'},
        h('h1', {}, 'Invitation'), h('p', {class: 'error', role: 'alert'}, text),
        h('a', {href: '/'}, 'Go to Quire'))));
    document.title = 'Invitation · Quire';
    return;
  }
  credentialsForm({
    root,
    title: 'Join Quire',
    lead: `${invitation.data.issuer} invited you. Pick a name and a password.`,
    button: 'Join',
    passwordAutocomplete: 'new-password',
    submit: (name, password) => call('POST', `/api/invite/${encodeURIComponent(id)}`, {name, password}),
    sentences: (r) => ({
      409: 'That name is taken. Pick another one.',
      404: 'This invitation was used or has expired meanwhile. Ask for a new one.',
      400: `${explain({...r, status: -1})} ${/name/i.test(r.serverError) ? NAME_RULES : ''}`.trim(),
    }),
    onDone,
  });
}
