// Message text and times for display. Bodies are only ever text nodes; the
// one structure added is a link for http(s) URLs, built as an element whose
// href was checked to be http or https.

import {h} from './dom.js';

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;

// Nodes for a message body: text, with http(s) URLs as links.
export function bodyNodes(body) {
  const nodes = [];
  let last = 0;
  for (const match of body.matchAll(URL_PATTERN)) {
    const raw = trimUrl(match[0]);
    const url = checkedUrl(raw);
    if (!url) continue;
    if (match.index > last) nodes.push(body.slice(last, match.index));
    nodes.push(h('a', {href: url, target: '_blank', rel: 'noopener noreferrer nofollow'}, raw));
    last = match.index + raw.length;
  }
  if (last < body.length) nodes.push(body.slice(last));
  return nodes;
}

// Trailing punctuation belongs to the sentence, not the URL; a closing
// parenthesis only when the URL has no opening one.
function trimUrl(text) {
  let url = text.replace(/[.,;:!?'"]+$/, '');
  while (/[)\]}]$/.test(url)) {
    const close = url.slice(-1);
    const open = {')': '(', ']': '[', '}': '{'}[close];
    if (url.split(open).length >= url.split(close).length) break;
    url = url.slice(0, -1).replace(/[.,;:!?'"]+$/, '');
  }
  return url;
}

function checkedUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

const timeFormat = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit'});
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'});
const fullFormat = new Intl.DateTimeFormat(undefined, {dateStyle: 'full', timeStyle: 'medium'});

// <time> for an RFC 3339 timestamp: the time alone today, date and time else.
export function timeNode(at) {
  const date = new Date(at);
  if (Number.isNaN(date.getTime())) return h('time', {}, '');
  const today = new Date().toDateString() === date.toDateString();
  const shown = today ? timeFormat.format(date) : dateTimeFormat.format(date);
  return h('time', {datetime: at, title: fullFormat.format(date)}, shown);
}
