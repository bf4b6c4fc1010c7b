/**
 * Stop waiting for a host operation after `ms`. The operation itself cannot be cancelled (a
 * libvirt call blocks a thread), so the caller must treat a timeout as "state unknown": keep the
 * record for `recover`, and the hook process exits explicitly instead of waiting for the thread.
 */
export class OperationTimeout extends Error {
  override readonly name = 'OperationTimeout';
}

export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new OperationTimeout(`${what} did not finish within ${Math.round(ms / 1000)} s`)),
      ms,
    );
    timer.unref();
  });
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}
