import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

/**
 * Asks a yes/no question; only "y" or "yes" is yes. The end of input (Ctrl-D at a terminal, a
 * closed pipe) is no, as the [y/N] says, never an error.
 */
export async function confirm(
  question: string,
  io: { input: Readable; output: Writable } = { input: process.stdin, output: process.stdout },
): Promise<boolean> {
  const rl = createInterface({ input: io.input, output: io.output, terminal: false });
  io.output.write(question);
  return new Promise<boolean>((resolve) => {
    let answered = false;
    rl.once('line', (line) => {
      answered = true;
      resolve(/^y(es)?$/i.test(line.trim()));
      rl.close();
    });
    rl.once('close', () => {
      // Ctrl-D: the cursor is still after the question.
      if (!answered) io.output.write('\n');
      resolve(false);
    });
  });
}
