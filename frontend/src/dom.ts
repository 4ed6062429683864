/** Small DOM helpers shared by the pages. */

export function byId<T extends HTMLElement | SVGElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as unknown as T;
}

/** Set text (and the raw value for tests and assistive tools) only when it changed. */
export function show(el: HTMLElement, text: string, value?: number): void {
  if (el.textContent !== text) el.textContent = text;
  if (value !== undefined) el.dataset.value = String(value);
}

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<{ className: string; text: string; href: string }> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.className) el.className = props.className;
  if (props.text !== undefined) el.textContent = props.text;
  if (props.href !== undefined && el instanceof HTMLAnchorElement) el.href = props.href;
  el.append(...children);
  return el;
}
