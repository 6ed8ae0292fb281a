// A tiny DOM builder: text only through text nodes (never innerHTML), so nothing the API
// returns can become markup.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | number | EventListener | undefined | null>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value as EventListener);
    } else if (name === "class") {
      el.className = String(value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  if (el instanceof HTMLTableElement) alignHeads(el);
  return el;
}

/** Headings of number columns aligned as their numbers (right), from the first row. */
function alignHeads(table: HTMLTableElement): void {
  const heads = table.tHead?.rows[0]?.cells;
  const first = table.tBodies[0]?.rows[0]?.cells;
  if (!heads || !first) return;
  for (let i = 0; i < heads.length && i < first.length; i++) {
    if (first[i].classList.contains("num")) heads[i].classList.add("num");
  }
}

export function append(el: Element, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

export function time(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function dateTime(value: number | string): string {
  const d = new Date(value);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], { hour12: false })}`;
}

export function state(kind: "loading" | "empty" | "error", text: string): HTMLElement {
  return h("p", { class: `state ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
