// Building DOM nodes without ever parsing markup: text always becomes text
// nodes, so nothing a server or a message says can turn into HTML.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'open', 'id', 'type']);

// h('button', {class: 'x', onclick: f}, 'Send') -> <button class="x">Send</button>
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

// Appends strings (as text nodes), nodes and nested arrays; skips null/false.
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child);  // a string becomes a text node
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// Puts the nodes of `wanted` into `container` in that order, moving only the
// ones out of place (a focused link or button keeps its focus) and removing
// the rest.
export function reconcile(container, wanted) {
  const keep = new Set(wanted);
  for (const child of [...container.children]) {
    if (!keep.has(child)) child.remove();
  }
  wanted.forEach((node, i) => {
    if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
  });
}
