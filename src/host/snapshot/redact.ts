// --redact: the identifiers a bug report should not carry, each replaced by the same stand-in
// wherever it appears (sysfs, config, definitions, state), so the snapshot still replays: a config
// that matches a USB serial matches the stand-in, a state record's boot id still equals the host's.

const PCI_NAME = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;
const MAC = /\b[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\b/g;
const UUID = /\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b/g;

export class Redactor {
  private readonly literals = new Map<string, string>();
  private readonly hostnames = new Map<string, string>();
  private readonly macs = new Map<string, string>();
  private readonly uuids = new Map<string, string>();
  private serials = 0;

  /** The host's name: replaced wherever it appears, in contents and in paths. */
  hostname(name: string): void {
    if (!name || this.hostnames.has(name)) return;
    this.hostnames.set(name, `host-${this.hostnames.size + 1}`);
    this.literals.set(name, this.hostnames.get(name)!);
  }

  /** A USB device's serial number (read from sysfs before anything else is written). */
  serial(value: string): void {
    // A root hub's "serial" is its controller's PCI address: not a secret, and in every path.
    if (PCI_NAME.test(value)) return;
    if (value.length >= 4 && !this.literals.has(value)) {
      this.serials += 1;
      this.literals.set(value, `SERIAL${String(this.serials).padStart(4, '0')}`);
    }
  }

  text(s: string): string {
    let out = s;
    // Longest first: a serial may contain a shorter one.
    for (const [from, to] of [...this.literals].sort((a, b) => b[0].length - a[0].length)) {
      out = out.split(from).join(to);
    }
    out = out.replace(MAC, (m) =>
      stable(this.macs, m.toLowerCase(), (n) => `02:00:00:00:${hex2(n >> 8)}:${hex2(n)}`),
    );
    return out.replace(UUID, (m) =>
      stable(
        this.uuids,
        m.toLowerCase(),
        (n) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`,
      ),
    );
  }

  /** A path below the root: only whole components equal to a literal (the hostname) change. */
  path(rel: string): string {
    return rel
      .split('/')
      .map((part) => this.hostnames.get(part) ?? part)
      .join('/');
  }
}

function stable(map: Map<string, string>, key: string, make: (n: number) => string): string {
  let v = map.get(key);
  if (v === undefined) {
    v = make(map.size + 1);
    map.set(key, v);
  }
  return v;
}

function hex2(n: number): string {
  return (n & 0xff).toString(16).padStart(2, '0');
}
