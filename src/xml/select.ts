import type { Element, Node } from '@xmldom/xmldom';
import { select } from 'xpath';
import { InvariantError } from '../model/errors.js';

// xpath is typed against the DOM lib and xmldom against its own interfaces; the casts live here only.

export function selectElements(expression: string, context: Node): Element[] {
  const found = select(expression, context as unknown as globalThis.Node);
  if (!Array.isArray(found)) throw new InvariantError(`XPath ${expression} did not select nodes`);
  return found.filter((n) => n.nodeType === 1) as unknown as Element[];
}

export function selectString(expression: string, context: Node): string {
  const found = select(`string(${expression})`, context as unknown as globalThis.Node);
  return typeof found === 'string' ? found : '';
}

export function childElements(el: Element, name?: string): Element[] {
  const out: Element[] = [];
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (name === undefined || (n as Element).tagName === name)) out.push(n as Element);
  }
  return out;
}

export function firstChild(el: Element | undefined, name: string): Element | undefined {
  return el ? childElements(el, name)[0] : undefined;
}
