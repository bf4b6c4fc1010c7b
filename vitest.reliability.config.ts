import { defineConfig } from 'vitest/config';
import { SummaryReporter } from './test/reliability/support/summary-reporter.js';

// `npm run test:reliability`: the crash, torn-write, concurrency, malformed-input and attack suites.
// They run the built program some thousand times, so they are not part of `npm test`; CI runs both.
export default defineConfig({
  test: {
    include: ['test/reliability/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    // Tests marked concurrent overlap their child processes; more would only queue on the CPU.
    maxConcurrency: 4,
    reporters: ['default', new SummaryReporter()],
  },
});
