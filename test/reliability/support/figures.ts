import type { TestContext } from 'vitest';

// Figures a test reports (`fault points: 13, recovered: 61`): kept in the test's meta, printed
// together by the suite's reporter before its closing `N passed, N failed` line.

declare module 'vitest' {
  interface TaskMeta {
    figures?: string[];
  }
}

export function figure(context: Pick<TestContext, 'task'>, line: string): void {
  context.task.meta.figures ??= [];
  context.task.meta.figures.push(line);
}
