import { describe, expect, it } from 'vitest';
import { colourDiff } from '../../src/cli/commands/apply.js';

describe('colourDiff', () => {
  const diff = '--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n same\n';
  it('colours additions, removals and hunks on a terminal', () => {
    const lines = colourDiff(diff, true).split('\n');
    expect(lines[3]).toBe('\u001b[31m-old\u001b[0m');
    expect(lines[4]).toBe('\u001b[32m+new\u001b[0m');
    expect(lines[2]).toBe('\u001b[36m@@ -1 +1 @@\u001b[0m');
    expect(lines[5]).toBe(' same');
  });
  it('leaves it plain otherwise', () => {
    expect(colourDiff(diff, false)).toBe(diff.trimEnd());
  });
});
