import type { Element } from '@xmldom/xmldom';
import { InvariantError } from '../model/errors.js';
import type { LocatedDocument } from './located.js';
import { childElements } from './select.js';

// Splices over the original text. Every change is a replacement of a range located through the
// DOM; everything outside those ranges is copied byte for byte.

/** An element to write: rendered in libvirt's style (single quotes, one child per line). */
export interface NewElement {
  name: string;
  attrs: ReadonlyArray<readonly [string, string]>;
  children?: readonly NewElement[];
}

interface AttrSpan {
  name: string;
  valueStart: number;
  valueEnd: number;
  end: number; // just after the closing quote
  quote: string;
}

interface Edit {
  start: number;
  end: number;
  text: string;
  seq: number;
}

export type Placement = 'first' | 'last' | { after: Element };

export class Editor {
  private readonly edits: Edit[] = [];
  private readonly expanded = new Map<Element, NewElement[]>();
  readonly text: string;
  /** The document's line break, so an added line matches its neighbours. */
  readonly nl: string;
  /** One level of indentation as the document spells it. */
  readonly unit: string;

  constructor(readonly located: LocatedDocument) {
    this.text = located.text;
    this.nl = this.text.includes('\r\n') ? '\r\n' : '\n';
    this.unit = this.detectUnit();
  }

  replace(start: number, end: number, text: string): void {
    if (start === end && text === '') return;
    this.edits.push({ start, end, text, seq: this.edits.length });
  }

  /** The edited text. Overlapping edits are a bug in the caller, not something to guess about. */
  apply(): string {
    for (const [parent, nodes] of this.expanded) {
      const e = this.renderChildren(parent, nodes, 'last');
      this.replace(e.start, e.end ?? e.start, e.text);
    }
    this.expanded.clear();
    const sorted = [...this.edits].sort((a, b) => a.start - b.start || a.end - b.end || a.seq - b.seq);
    let out = '';
    let at = 0;
    for (const e of sorted) {
      if (e.start < at) throw new InvariantError('overlapping XML edits');
      out += this.text.slice(at, e.start) + e.text;
      at = e.end;
    }
    return out + this.text.slice(at);
  }

  attr(el: Element, name: string): AttrSpan | undefined {
    return this.attrs(el).find((a) => a.name === name);
  }

  /** Sets an attribute, keeping its quote character; appends it (same quoting as its neighbours) when absent. */
  setAttr(el: Element, name: string, value: string): void {
    const spans = this.attrs(el);
    const found = spans.find((a) => a.name === name);
    if (found) {
      this.replace(found.valueStart, found.valueEnd, escapeAttr(value, found.quote));
      return;
    }
    const quote = spans[0]?.quote ?? "'";
    const at = spans.at(-1)?.end ?? this.located.range(el).start + 1 + el.tagName.length;
    this.replace(at, at, ` ${name}=${quote}${escapeAttr(value, quote)}${quote}`);
  }

  /** Removes an element; when it is alone on its line, the whole line goes so no blank line remains. */
  remove(el: Element): void {
    const r = this.located.range(el);
    const lineStart = this.lineStart(r.start);
    const before = this.text.slice(lineStart, r.start);
    const lineEnd = this.lineEndAfter(r.end);
    if (/^[ \t]*$/.test(before) && lineEnd !== null) {
      this.replace(lineStart, lineEnd, '');
    } else {
      const ws = /[ \t]*$/.exec(before)![0].length;
      this.replace(r.start - ws, r.end, '');
    }
  }

  /** Replaces an element in place with a new one at the same indentation. */
  replaceElement(el: Element, node: NewElement): void {
    const r = this.located.range(el);
    const indent = this.indentOf(el);
    this.replace(r.start, r.end, this.render(node, indent ?? '', indent === null));
  }

  insertChild(parent: Element, node: NewElement, where: Placement): void {
    this.insertChildren(parent, [node], where);
  }

  /** Inserts several children at one place, in order, indented like their siblings. */
  insertChildren(parent: Element, nodes: readonly NewElement[], where: Placement): void {
    if (nodes.length === 0) return;
    if (typeof where === 'string' && this.located.range(parent).selfClosing) {
      // <x/> is rewritten whole, once, with every child given to it.
      const pending = this.expanded.get(parent) ?? [];
      this.expanded.set(parent, where === 'first' ? [...nodes, ...pending] : [...pending, ...nodes]);
      return;
    }
    const e = this.renderChildren(parent, nodes, where);
    this.replace(e.start, e.end ?? e.start, e.text);
  }

  startOf(el: Element): number {
    return this.located.range(el).start;
  }

  /** Whitespace before the element on its line, or null when something else precedes it there. */
  indentOf(el: Element): string | null {
    const start = this.located.range(el).start;
    const before = this.text.slice(this.lineStart(start), start);
    return /^[ \t]*$/.test(before) ? before : null;
  }

  private renderChildren(
    parent: Element,
    nodes: readonly NewElement[],
    where: Placement,
  ): { start: number; end?: number; text: string } {
    const pr = this.located.range(parent);
    const kids = childElements(parent);
    const parentIndent = this.indentOf(parent);
    const firstKid = kids[0];
    const kidIndent = firstKid
      ? this.indentOf(firstKid)
      : parentIndent === null
        ? null
        : parentIndent + this.unit;
    const compact = kidIndent === null;
    const ci = kidIndent ?? '';
    const body = (lead: boolean) =>
      nodes
        .map((n, i) => (compact ? '' : lead || i > 0 ? this.nl + ci : ci) + this.render(n, ci, compact))
        .join('');

    if (typeof where === 'object') {
      const r = this.located.range(where.after);
      const own = this.indentOf(where.after);
      if (own === null) return { start: r.end, text: nodes.map((n) => this.render(n, '', true)).join('') };
      return {
        start: r.end,
        text: nodes.map((n) => this.nl + own + this.render(n, own, false)).join(''),
      };
    }
    if (pr.selfClosing) {
      // <source/> becomes <source>…</source>
      const slash = this.text.lastIndexOf('/', pr.startTagEnd);
      const wsStart = slash - /[ \t]*$/.exec(this.text.slice(pr.start, slash))![0].length;
      const close = `</${parent.tagName}>`;
      const text = compact
        ? `>${body(false)}${close}`
        : `>${body(true)}${this.nl}${parentIndent ?? ''}${close}`;
      return { start: wsStart, end: pr.end, text };
    }
    if (where === 'first' && firstKid) {
      return { start: pr.startTagEnd, text: body(true) };
    }
    if (compact) return { start: pr.closeStart, text: body(false) };
    const closeLineStart = this.lineStart(pr.closeStart);
    if (/^[ \t]*$/.test(this.text.slice(closeLineStart, pr.closeStart)) && closeLineStart > pr.startTagEnd) {
      return { start: closeLineStart, text: body(false) + this.nl };
    }
    return { start: pr.closeStart, text: `${body(true)}${this.nl}${parentIndent ?? ''}` };
  }

  /** Renders an element; `indent` is the indentation of its own first line. */
  render(node: NewElement, indent: string, compact: boolean): string {
    const attrs = node.attrs.map(([k, v]) => ` ${k}='${escapeAttr(v, "'")}'`).join('');
    const kids = node.children ?? [];
    if (kids.length === 0) return `<${node.name}${attrs}/>`;
    const inner = indent + this.unit;
    const body = compact
      ? kids.map((k) => this.render(k, '', true)).join('')
      : kids.map((k) => this.nl + inner + this.render(k, inner, false)).join('') + this.nl + indent;
    return `<${node.name}${attrs}>${body}</${node.name}>`;
  }

  private attrs(el: Element): AttrSpan[] {
    const r = this.located.range(el);
    const t = this.text;
    const spans: AttrSpan[] = [];
    let i = r.start + 1 + el.tagName.length;
    const nameRe = /[^\s=/>]+/y;
    for (;;) {
      while (/\s/.test(t[i] ?? '')) i++;
      if (t[i] === '/' || t[i] === '>' || i >= r.startTagEnd) return spans;
      nameRe.lastIndex = i;
      const m = nameRe.exec(t);
      if (!m) throw new InvariantError(`cannot read the attributes of <${el.tagName}>`);
      i += m[0].length;
      while (/\s/.test(t[i] ?? '')) i++;
      i++; // '='
      while (/\s/.test(t[i] ?? '')) i++;
      const quote = t[i]!;
      const valueStart = i + 1;
      const valueEnd = t.indexOf(quote, valueStart);
      spans.push({ name: m[0], valueStart, valueEnd, end: valueEnd + 1, quote });
      i = valueEnd + 1;
    }
  }

  private lineStart(offset: number): number {
    const nl = this.text.lastIndexOf('\n', offset - 1);
    const cr = this.text.lastIndexOf('\r', offset - 1);
    return Math.max(nl, cr) + 1;
  }

  /** After trailing blanks and one line break following `offset`; null when more content follows on the line. */
  private lineEndAfter(offset: number): number | null {
    let j = offset;
    while (this.text[j] === ' ' || this.text[j] === '\t') j++;
    if (j >= this.text.length) return j;
    if (this.text.startsWith('\r\n', j)) return j + 2;
    if (this.text[j] === '\n' || this.text[j] === '\r') return j + 1;
    return null;
  }

  private detectUnit(): string {
    const root = this.located.doc.documentElement;
    const first = root ? childElements(root).find((k) => this.indentOf(k)) : undefined;
    const indent = first ? this.indentOf(first) : null;
    const rootIndent = root ? (this.indentOf(root) ?? '') : '';
    return indent?.startsWith(rootIndent) && indent.length > rootIndent.length
      ? indent.slice(rootIndent.length)
      : '  ';
  }
}

function escapeAttr(value: string, quote: string): string {
  const escaped = value.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return quote === '"' ? escaped.replace(/"/g, '&quot;') : escaped.replace(/'/g, '&apos;');
}
