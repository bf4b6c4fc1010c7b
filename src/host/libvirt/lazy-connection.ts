/**
 * A connection opened on first use and shared by later calls. A failed open is not kept: the next
 * call tries again. close() is idempotent and closes only what was opened.
 */
export class LazyConnection<C extends { close(): Promise<void> }> {
  private pending: Promise<C> | null = null;

  constructor(private readonly connect: () => Promise<C>) {}

  get(): Promise<C> {
    if (!this.pending) {
      const opening = this.connect();
      this.pending = opening;
      opening.catch(() => {
        if (this.pending === opening) this.pending = null;
      });
    }
    return this.pending;
  }

  async close(): Promise<void> {
    const pending = this.pending;
    this.pending = null;
    if (!pending) return;
    const connection = await pending.catch(() => null); // a failed open has nothing to close
    await connection?.close();
  }
}

/**
 * Opens for a LazyConnection: first `early` (a connection already opening, begun before anyone
 * needed it), and from the second call on, should that one have failed, `open` anew.
 */
export function earlyThenOpen<C>(early: Promise<C>, open: () => Promise<C>): () => Promise<C> {
  let first: Promise<C> | null = early;
  return () => {
    const connection = first ?? open();
    first = null;
    return connection;
  };
}
