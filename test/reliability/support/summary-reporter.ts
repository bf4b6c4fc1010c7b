import type { Reporter, SerializedError, TestModule } from 'vitest/node';

/**
 * Closes `npm run test:reliability` with the figures the tests reported and one plain line,
 * `N passed, N failed`, alone and last: CI reads it. A file that fails to load and an unhandled
 * error each count as a failure.
 */
export class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    const figures: string[] = [];
    for (const m of modules) {
      let tests = 0;
      for (const t of m.children.allTests()) {
        tests++;
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        for (const f of t.meta().figures ?? []) figures.push(f);
      }
      if (tests === 0 && m.state() === 'failed') failed++;
    }
    const out: string[] = [];
    if (figures.length > 0) out.push('', 'reliability figures:', ...figures.map((f) => `  ${f}`));
    out.push('', `${passed} passed, ${failed} failed`);
    process.stdout.write(`${out.join('\n')}\n`);
  }
}
