import { DOMParser, type Document, type Element } from '@xmldom/xmldom';
import { InvariantError, XmlError } from '../model/errors.js';

// We never serialize the DOM: it would lose quoting, entity spelling and layout. The DOM says
// *what* is there; these offsets say *where*, so edits are splices of the original text.

/** Where an element sits in the original text (offsets in UTF-16 code units, end exclusive). */
export interface ElementRange {
  start: number; // the '<' of the start tag
  startTagEnd: number; // just after the start tag's '>' (or '/>')
  closeStart: number; // the '<' of the end tag; equals `end` when self-closing
  end: number; // just after the element
  selfClosing: boolean;
}

const LINE_BREAK = /\r\n?|\n/g; // the same breaks xmldom's locator counts

export class LocatedDocument {
  private readonly ranges = new Map<Element, ElementRange>();

  private constructor(
    readonly text: string,
    readonly doc: Document,
    private readonly lineStarts: number[],
    private readonly base: number,
  ) {}

  /** Parses strictly: any error or warning from xmldom is malformed XML. */
  static parse(text: string): LocatedDocument {
    // A byte-order mark is not markup; xmldom rejects it, so parse past it and shift offsets.
    const base = text.startsWith('\uFEFF') ? 1 : 0;
    const body = text.slice(base);
    let first: { message: string; line?: number; column?: number } | undefined;
    const parser = new DOMParser({
      // Keep line ends as they are so xmldom's columns index the original text.
      normalizeLineEndings: (s: string) => s,
      onError: (level, message, context) => {
        if (level === 'warning' && message.startsWith('Unicode replacement character')) return;
        const loc = (context as { locator?: { lineNumber?: number; columnNumber?: number } }).locator;
        first ??= { message, line: loc?.lineNumber, column: loc?.columnNumber };
        throw new Error(message);
      },
    });
    let doc: Document;
    try {
      doc = parser.parseFromString(body, 'text/xml');
    } catch (err) {
      const detail = first ?? { message: err instanceof Error ? err.message : String(err) };
      throw new XmlError(`malformed XML${where(detail.line, detail.column)}: ${oneLine(detail.message)}`, {
        cause: err,
      });
    }
    const lineStarts = [0];
    for (const m of body.matchAll(LINE_BREAK)) lineStarts.push(m.index + m[0].length);
    return new LocatedDocument(text, doc, lineStarts, base);
  }

  /** The element's place in the text; checked against the text so a locator drift cannot go unnoticed. */
  range(el: Element): ElementRange {
    const known = this.ranges.get(el);
    if (known) return known;
    const line = el.lineNumber;
    const column = el.columnNumber;
    const lineStart = line === undefined ? undefined : this.lineStarts[line - 1];
    if (lineStart === undefined || column === undefined) {
      throw new InvariantError(`no source position for <${el.tagName}>`);
    }
    const start = this.base + lineStart + column - 1;
    if (this.text[start] !== '<' || !this.text.startsWith(el.tagName, start + 1)) {
      throw new InvariantError(`source position of <${el.tagName}> does not point at its start tag`);
    }
    const range = scanElement(this.text, start);
    this.ranges.set(el, range);
    return range;
  }
}

function where(line: number | undefined, column: number | undefined): string {
  if (!line) return '';
  return column ? ` at line ${line}, column ${column}` : ` at line ${line}`;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** End of the tag (start, end, comment-free) beginning at `at`: just after its '>'. Quotes may hold '>'. */
export function tagEnd(text: string, at: number): number {
  let quote: string | null = null;
  for (let i = at + 1; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '>') {
      return i + 1;
    }
  }
  throw new InvariantError('unterminated tag in a document that parsed');
}

/** Finds the end of the element whose start tag begins at `start`; the text is known well-formed. */
export function scanElement(text: string, start: number): ElementRange {
  const startTagEnd = tagEnd(text, start);
  if (text[startTagEnd - 2] === '/') {
    return { start, startTagEnd, closeStart: startTagEnd, end: startTagEnd, selfClosing: true };
  }
  let depth = 1;
  let i = startTagEnd;
  for (;;) {
    const lt = text.indexOf('<', i);
    if (lt < 0) throw new InvariantError('unclosed element in a document that parsed');
    if (text.startsWith('<!--', lt)) {
      i = skipPast(text, lt, '-->');
    } else if (text.startsWith('<![CDATA[', lt)) {
      i = skipPast(text, lt, ']]>');
    } else if (text.startsWith('<?', lt)) {
      i = skipPast(text, lt, '?>');
    } else if (text.startsWith('</', lt)) {
      const end = tagEnd(text, lt);
      depth--;
      if (depth === 0) return { start, startTagEnd, closeStart: lt, end, selfClosing: false };
      i = end;
    } else {
      const end = tagEnd(text, lt);
      if (text[end - 2] !== '/') depth++;
      i = end;
    }
  }
}

function skipPast(text: string, from: number, terminator: string): number {
  const at = text.indexOf(terminator, from);
  if (at < 0) throw new InvariantError(`missing "${terminator}" in a document that parsed`);
  return at + terminator.length;
}
