import { childProcess } from '../../model/lazy-builtins.js';
import { OperationTimeout } from '../../model/timeout.js';

// Host commands and kernel writes of a hand-over run in a child with a deadline: an unbind or a
// module removal can block in the kernel while the card is in use, and libvirt waits for the hook
// forever. At the deadline the child is killed; one stuck in the kernel (D state) cannot be, so it
// is left behind, detached from our pipes, and the step fails.

/** libvirt clears the environment; these are where systemctl, loginctl, rmmod and modprobe live. */
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ChildResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runChild(
  command: string,
  args: readonly string[],
  options: { timeoutMs: number; input?: string },
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = childProcess().spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH, LC_ALL: 'C' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      // Stuck in the kernel: stop listening so this process can exit without it.
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
      reject(
        new OperationTimeout(
          `${command} ${args.join(' ')} did not finish within ${Math.round(options.timeoutMs / 100) / 10} s`,
        ),
      );
    }, options.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** The errno a command's message names (dd, rmmod, modprobe print strerror text). */
export function errnoFromMessage(message: string): string | undefined {
  const table: [RegExp, string][] = [
    [/No such device(?! or address)/i, 'ENODEV'],
    [/No such file or directory|not currently loaded|not found/i, 'ENOENT'],
    [/Resource temporarily unavailable|is in use/i, 'EAGAIN'],
    [/Device or resource busy/i, 'EBUSY'],
    [/Operation not permitted|builtin/i, 'EPERM'],
    [/Permission denied/i, 'EACCES'],
    [/Invalid argument/i, 'EINVAL'],
  ];
  return table.find(([re]) => re.test(message))?.[1];
}
