/** What libvirt passes to /etc/libvirt/hooks/qemu: argv `<domain> <op> <subop> <extra>`. */
export interface HookEvent {
  readonly domain: string;
  readonly op: string;
  readonly subop: string;
  readonly extra: string;
}

/** Ops with built-in work. Everything else only runs per-VM scripts. */
export type BuiltinOp = 'prepare' | 'release' | 'migrate' | 'restore';

export function builtinOp(op: string): BuiltinOp | null {
  return op === 'prepare' || op === 'release' || op === 'migrate' || op === 'restore' ? op : null;
}

/** Ops whose non-zero exit libvirt acts on; for `reconnect` a failure kills a running VM. */
export function exitStatusMatters(op: string): boolean {
  return ['prepare', 'start', 'started', 'migrate', 'restore'].includes(op);
}
