// Small DOM helpers shared by the views.
const SVG = 'http://www.w3.org/2000/svg';

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text = ''): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
  if (text) {
    e.textContent = text;
  }
  return e;
}

export function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, String(v)));
  return e;
}

/** A button styled as JupyterLab's own (`jp-mod-styled`; `accept`: the main action, in the brand colour). */
export function button(label: string, cls: string, onClick: () => void, accept = false): HTMLButtonElement {
  const b = el('button', { class: `jp-mod-styled ${accept ? 'jp-mod-accept ' : ''}${cls}`, type: 'button' }, label);
  b.onclick = onClick;
  return b;
}
