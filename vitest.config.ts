import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/reliability: its own run, `npm run test:reliability` (vitest.reliability.config.ts).
    exclude: ['test/lab/**', 'test/reliability/**'],
    testTimeout: 30_000,
    pool: 'forks',
  },
});
