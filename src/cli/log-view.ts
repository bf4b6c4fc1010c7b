// The hook's JSON log (pino lines) for a person: one line per event, level as a word, the VM once.

const LEVELS: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/** Fields every line has, shown in their own columns (or not at all). */
const SHOWN_APART = new Set(['level', 'time', 'pid', 'hostname', 'domain', 'op', 'subop', 'msg', 'stack']);

export interface LogEvent {
  readonly level: string;
  /** Milliseconds since the epoch, or null when the line has no readable time. */
  readonly time: number | null;
  readonly domain: string | null;
  /** "prepare/begin", "redefine". */
  readonly event: string | null;
  readonly msg: string;
  readonly fields: Readonly<Record<string, unknown>>;
  /** The line as written, normalized: the level as a word. */
  readonly json: Record<string, unknown>;
}

/** One log line; null for a line that is not one of ours (a torn write, another program's). */
export function parseLogLine(line: string): LogEvent | null {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return null;
  const r = o as Record<string, unknown>;
  // Lines written before the log carried level words have pino's numbers.
  const level =
    typeof r['level'] === 'number' ? (LEVELS[r['level']] ?? String(r['level'])) : String(r['level'] ?? '?');
  const t = r['time'];
  const time = typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : Number.NaN;
  const op = typeof r['op'] === 'string' ? r['op'] : null;
  const subop = typeof r['subop'] === 'string' ? r['subop'] : null;
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (!SHOWN_APART.has(k)) fields[k] = v;
  const event = op ? (subop ? `${op}/${subop}` : op) : typeof r['event'] === 'string' ? r['event'] : null;
  // The event column says it already.
  if (fields['event'] === event) delete fields['event'];
  if (fields['domain'] !== undefined) delete fields['domain'];
  return {
    level,
    time: Number.isNaN(time) ? null : time,
    domain: typeof r['domain'] === 'string' ? r['domain'] : null,
    event,
    msg: typeof r['msg'] === 'string' ? r['msg'] : '',
    fields,
    json: { ...r, level },
  };
}

export function renderEvent(e: LogEvent, options: { verbose?: boolean } = {}): string {
  const parts = [
    e.time === null ? '-'.padEnd(19) : localTime(new Date(e.time)),
    e.level.toUpperCase().padEnd(5),
    e.domain ?? '-',
    e.event ?? '-',
    e.msg,
  ];
  const extra = Object.entries(e.fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${fieldText(v)}`);
  let line = [...parts, ...extra].join('  ');
  if (options.verbose && typeof e.json['stack'] === 'string') line += `\n${e.json['stack']}`;
  return line;
}

function fieldText(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string' && !/[\s,]/.test(x))) return v.join(',');
  return JSON.stringify(v);
}

/** "2026-12-02 06:41:39" in the local time zone (as journalctl shows it). */
function localTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
