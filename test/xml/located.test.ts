import { describe, expect, it } from 'vitest';
import { LocatedDocument, scanElement } from '../../src/xml/located.js';
import { selectElements } from '../../src/xml/select.js';

describe('scanElement', () => {
  it('finds the real end tag past comments, CDATA, processing instructions and quoted >', () => {
    const text = `<a x="1>2"><!-- </a> --><![CDATA[</a>]]><?pi </a>?><a/><b y='>'>t</b></a>tail`;
    const r = scanElement(text, 0);
    expect(text.slice(r.start, r.startTagEnd)).toBe('<a x="1>2">');
    expect(text.slice(r.closeStart, r.end)).toBe('</a>');
    expect(text.slice(r.end)).toBe('tail');
    expect(r.selfClosing).toBe(false);
  });

  it('knows a self-closing element', () => {
    const r = scanElement("<x a='/>'  />rest", 0);
    expect(r).toMatchObject({ selfClosing: true, end: 13 });
  });
});

describe('LocatedDocument.range', () => {
  it('locates elements whatever the line ends, after a byte-order mark and multi-line tags', () => {
    const text = '\uFEFF<r>\r\n  <x\r\n   a="1"/>\r<y>\n<z/></y>\n</r>';
    const doc = LocatedDocument.parse(text);
    const slice = (name: string) => {
      const r = doc.range(selectElements(`//${name}`, doc.doc)[0]!);
      return text.slice(r.start, r.end);
    };
    expect(slice('x')).toBe('<x\r\n   a="1"/>');
    expect(slice('y')).toBe('<y>\n<z/></y>');
    expect(slice('z')).toBe('<z/>');
  });
});
