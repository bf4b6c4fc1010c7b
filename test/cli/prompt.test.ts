import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { confirm } from '../../src/cli/prompt.js';

function ask(input: string | null) {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let shown = '';
  stdout.on('data', (b) => {
    shown += String(b);
  });
  const answer = confirm('Apply to win11? [y/N] ', { input: stdin, output: stdout });
  if (input === null) stdin.end();
  else stdin.end(input);
  return answer.then((yes) => ({ yes, shown }));
}

describe('confirm', () => {
  it('only y or yes is yes', async () => {
    for (const a of ['y\n', 'Y\n', 'yes\n', ' yes \n']) expect((await ask(a)).yes, a).toBe(true);
    for (const a of ['n\n', '\n', 'yep\n', 'no\n']) expect((await ask(a)).yes, a).toBe(false);
  });

  it('the end of input (Ctrl-D) is no, and the next line starts on a line of its own', async () => {
    expect(await ask(null)).toEqual({ yes: false, shown: 'Apply to win11? [y/N] \n' });
  });
});
