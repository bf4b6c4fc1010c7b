import { createTwoFilesPatch } from 'diff';

/** A unified diff of two versions of one file ('' when they are equal), without the Index/==== banner. */
export function unifiedDiff(before: string, after: string, label: string): string {
  if (before === after) return '';
  const patch = createTwoFilesPatch(label, label, before, after, 'current', 'new', { context: 3 });
  return patch.replace(/^Index: .*\n=+\n/, '');
}
