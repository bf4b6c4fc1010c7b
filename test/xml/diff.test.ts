import { describe, expect, it } from 'vitest';
import { unifiedDiff } from '../../src/xml/diff.js';

describe('unifiedDiff', () => {
  it('is empty when nothing changed', () => {
    expect(unifiedDiff('<a/>\n', '<a/>\n', 'win11.xml')).toBe('');
  });

  it('is a unified diff naming the file, without the Index banner', () => {
    const d = unifiedDiff('a\nb\nc\n', 'a\nB\nc\n', 'win11.xml');
    const lines = d.split('\n');
    expect(lines[0]).toMatch(/^--- win11\.xml/);
    expect(lines[1]).toMatch(/^\+\+\+ win11\.xml/);
    expect(lines).toContain('-b');
    expect(lines).toContain('+B');
    expect(d).not.toContain('Index:');
    expect(d).not.toContain('====');
  });
});
