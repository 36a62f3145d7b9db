/**
 * The keep-alive state machine of the spec, on an injected clock: quiet until
 * the first request, alive for `interval` after the latest one, then quiet
 * again. An interval of 0 means always alive.
 */
export class KeepAlive {
  #deadline = -Infinity;
  #alive: boolean;

  constructor(readonly intervalMs: number) {
    this.#alive = intervalMs === 0;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** When the current alive period ends (ms, on the injected clock). */
  get deadline(): number {
    return this.#alive && this.intervalMs > 0 ? this.#deadline : Infinity;
  }

  /** A read or write request arrived; returns true when it woke the bridge. */
  request(now: number): boolean {
    const woke = !this.#alive;
    this.#alive = true;
    this.#deadline = now + this.intervalMs;
    return woke;
  }

  /** Called when the deadline may have passed; returns true when it expired now. */
  expire(now: number): boolean {
    if (!this.#alive || now < this.deadline) return false;
    this.#alive = false;
    return true;
  }
}
