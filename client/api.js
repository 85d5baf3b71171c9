// The HTTP API: one function for every call, and the sentences a person reads
// when one fails.

const UNREACHABLE = 'The server could not be reached. Check the connection and try again.';

// Calls the API. Never throws: resolves to {ok, status, data} or
// {ok: false, status, error, serverError} (status 0: no answer at all).
export async function call(method, path, body, headers = {}) {
  const init = {method, credentials: 'same-origin', cache: 'no-store', headers: {...headers}};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    return {ok: false, status: 0, error: UNREACHABLE};
  }
  let data = null;
  try {
    const text = await response.text();
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) return {ok: true, status: response.status, data};
  const serverError = data && typeof data.error === 'string' ? data.error : '';
  const result = {ok: false, status: response.status, serverError, error: ''};
  result.error = explain(result, {}, response.headers.get('Retry-After'));
  return result;
}

// A sentence for a failed call. `sentences` maps a status to the sentence
// that fits the action; the rest get a general one.
export function explain(result, sentences = {}, retryAfter = null) {
  if (sentences[result.status]) return sentences[result.status];
  switch (result.status) {
    case 0:
      return UNREACHABLE;
    case 401:
      return 'Your session has ended. Please log in again.';
    case 403:
      return 'You are not allowed to do that.';
    case 413:
      return 'That is too long to send.';
    case 429:
      return retryAfter ? `Too many attempts. Try again in ${retryAfter} seconds.` : 'Too many attempts. Try again in a moment.';
    case 503:
      return 'The server is unavailable right now. Try again in a moment.';
  }
  if (result.serverError) return sentence(result.serverError);
  return `Something went wrong (the server answered ${result.status}).`;
}

// "name in use" -> "Name in use."
function sentence(text) {
  const trimmed = text.trim();
  const first = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

export function isNotSetUp(result) {
  return result.status === 503 && /not set up/i.test(result.serverError || '');
}

// A random key for Idempotency-Key (crypto.randomUUID needs a secure context;
// getRandomValues does not).
export function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
