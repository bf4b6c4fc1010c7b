import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { defaultConfig, loadConfigFile } from '../../config/load.js';
import { HostError, UsageError } from '../../model/errors.js';
import { underRoot } from '../../model/paths.js';
import type { CliContext } from '../context.js';
import { EXIT } from '../exit.js';
import { type LogEvent, parseLogLine, renderEvent } from '../log-view.js';

const POLL_MS = 250;

/**
 * `qemu-hook log [--vm NAME]... [--follow] [--json]`: the hook's log, one line per event. With
 * --follow it keeps reading: a file rotated away (renamed) is left for the new one at the same
 * path, a file truncated in place (copytruncate) is read again from its start.
 */
export async function log(ctx: CliContext): Promise<number> {
  // The log must be readable with a broken config too: it is where you look when something failed.
  const cfg = (await loadConfigFile(ctx.paths.configFile).catch(() => null))?.config ?? defaultConfig();
  const file = underRoot(ctx.paths.root, cfg.log.file);
  const vms = ctx.args.vms;
  const show = (e: LogEvent) => {
    if (vms.length > 0 && !(e.domain !== null && vms.includes(e.domain))) return;
    ctx.out(ctx.args.json ? JSON.stringify(e.json) : renderEvent(e, { verbose: ctx.args.verbose }));
  };
  const reader = new LineReader(file, (line) => {
    const e = parseLogLine(line);
    // A line that is not ours is shown as it is (never with --json, which promises JSON).
    if (e) show(e);
    else if (!ctx.args.json && vms.length === 0 && line.trim() !== '') ctx.out(line);
  });
  const found = reader.poll();
  if (!ctx.args.follow) {
    reader.flush();
    if (!found)
      ctx.err(`note: no log at ${file} yet: the hook writes it at the first event of a configured VM`);
    return EXIT.ok;
  }
  if (!found) ctx.err(`note: no log at ${file} yet; waiting for it`);
  setInterval(() => reader.poll(), POLL_MS);
  // Runs until interrupted (Ctrl-C).
  return new Promise<number>(() => {});
}

/** Reads whole lines appended to a file since the last poll, following rotation and truncation. */
class LineReader {
  private ino: number | null = null;
  private offset = 0;
  private partial = '';
  private decoder = new StringDecoder('utf8');

  constructor(
    private readonly file: string,
    private readonly onLine: (line: string) => void,
  ) {}

  /** False when the file is not there. */
  poll(): boolean {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(this.file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw this.unreadable(err);
    }
    if (st.ino !== this.ino || st.size < this.offset) {
      // A new file (rotated) or the same one emptied (copytruncate): from its start.
      this.ino = st.ino;
      this.offset = 0;
      this.partial = '';
      this.decoder = new StringDecoder('utf8');
    }
    if (st.size === this.offset) return true;
    let fd: number;
    try {
      fd = openSync(this.file, 'r');
    } catch (err) {
      throw this.unreadable(err);
    }
    try {
      const chunk = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, this.offset);
        if (n === 0) break;
        this.offset += n;
        const text = this.partial + this.decoder.write(chunk.subarray(0, n));
        const lines = text.split('\n');
        // The last piece has no newline yet: a line the hook is still writing.
        this.partial = lines.pop() ?? '';
        for (const line of lines) this.onLine(line);
      }
    } finally {
      closeSync(fd);
    }
    return true;
  }

  /** /var/log/libvirt is root's: say so rather than "no log yet" or a stack. */
  private unreadable(err: unknown): Error {
    return (err as NodeJS.ErrnoException).code === 'EACCES'
      ? new UsageError(`cannot read ${this.file}: permission denied; run it with sudo`)
      : HostError.from('read the log', this.file, err);
  }

  /** The last line, also without its newline (when not following, nothing more will come). */
  flush(): void {
    if (this.partial !== '') this.onLine(this.partial);
    this.partial = '';
  }
}
