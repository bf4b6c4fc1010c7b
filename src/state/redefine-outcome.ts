import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// What the detached redefine helper did, for `qemu-hook status`: the hook's refusal only says the
// helper was scheduled. One small JSON file per domain beside the helper's pid file, under /run:
// it concerns this boot only.

export interface RedefineReport {
  readonly domain: string;
  /** redefine | restart (onAddressChange) */
  readonly mode: string;
  /** working, then redefined | restarted | unchanged | running | undefined | refused | failed | gave-up */
  readonly outcome: string;
  readonly at: string;
  /** Why, for refused, failed and gave-up. */
  readonly detail?: string;
}

export function redefineReportFile(runDir: string, domain: string): string {
  return join(runDir, `redefine-${domain}.json`);
}

/** Replaces the domain's report (write beside, rename): a reader never sees half a file. */
export function writeRedefineReport(runDir: string, report: RedefineReport): void {
  mkdirSync(runDir, { recursive: true });
  const file = redefineReportFile(runDir, report.domain);
  const tmp = `${file}.${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(report)}\n`);
  renameSync(tmp, file);
}

/** Every report in `runDir`, newest first; unreadable ones are skipped. */
export function readRedefineReports(runDir: string): RedefineReport[] {
  let names: string[];
  try {
    names = readdirSync(runDir).filter((n) => /^redefine-.+\.json$/.test(n));
  } catch {
    return [];
  }
  const out: RedefineReport[] = [];
  for (const n of names) {
    try {
      const r = JSON.parse(readFileSync(join(runDir, n), 'utf8')) as RedefineReport;
      if (typeof r.domain === 'string' && typeof r.outcome === 'string') out.push(r);
    } catch {
      // a report is a courtesy: a broken one is not worth failing status for
    }
  }
  return out.sort((a, b) => (a.at < b.at ? 1 : -1));
}
