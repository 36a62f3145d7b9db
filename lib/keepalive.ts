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

/** What a keep-alive request (`R/<id>/keepalive`, `R/<id>/system/0/Serial`) asks for. */
export interface KeepAliveOptions {
  republish: boolean;
  /** Token to echo in full_publish_completed. */
  echo?: string;
}

/**
 * Reads `{"keepalive-options": ["suppress-republish", {"full-publish-completed-echo": "x"}]}`.
 * Anything else, garbage included, is a plain keep-alive with a republish.
 */
export function parseKeepAliveOptions(payload: string): KeepAliveOptions {
  const options: KeepAliveOptions = { republish: true };
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    return options;
  }
  const list = (parsed as Record<string, unknown> | null)?.["keepalive-options"];
  if (!Array.isArray(list)) return options;
  for (const option of list) {
    if (option === "suppress-republish") options.republish = false;
    const echo = (option as Record<string, unknown> | null)?.["full-publish-completed-echo"];
    if (typeof echo === "string") options.echo = echo;
  }
  return options;
}

/**
 * Full republishes allowed per second (a bucket refilled every second), so a
 * storm of keep-alives cannot take the device down.
 */
export class RepublishLimiter {
  #tokens: number;
  #refilledAt = -Infinity;

  constructor(readonly perSecond = 3) {
    this.#tokens = perSecond;
  }

  /** Takes a token if one is left; returns false when over the limit. */
  take(now: number): boolean {
    if (now - this.#refilledAt >= 1000) {
      this.#tokens = this.perSecond;
      this.#refilledAt = now;
    }
    if (this.#tokens === 0) return false;
    this.#tokens--;
    return true;
  }

  /** When the next token comes. */
  nextAt(): number {
    return this.#refilledAt + 1000;
  }
}

/** Echo tokens longer than this are not echoed (clients use short ones, e.g. a UUID). */
export const MAX_ECHO_LENGTH = 1024;
/** Echo tokens waiting for the next full republish, by count and by characters in all. */
const MAX_WAITING_ECHOES = 10_000;
const MAX_WAITING_ECHO_CHARS = 1024 * 1024;

/**
 * Echo tokens to send after the next full republish. The rate limit
 * makes tokens wait; memory stays bounded by dropping the oldest ones first:
 * MQTT does not say which client sent a token, and a flooding client's tokens
 * are most of the oldest. A token asked for twice is echoed once.
 */
export class WaitingEchoes {
  readonly #echoes = new Set<string>();
  #chars = 0;

  /** Adds a token; returns how many old tokens were dropped for it. */
  add(echo: string): number {
    if (this.#echoes.has(echo)) return 0;
    this.#echoes.add(echo);
    this.#chars += echo.length;
    let dropped = 0;
    for (const oldest of this.#echoes) {
      if (this.#echoes.size <= MAX_WAITING_ECHOES && this.#chars <= MAX_WAITING_ECHO_CHARS) break;
      this.#echoes.delete(oldest);
      this.#chars -= oldest.length;
      dropped++;
    }
    return dropped;
  }

  /** The republish is done: the echoes to send with it, in the order asked. */
  take(): string[] {
    const echoes = [...this.#echoes];
    this.#echoes.clear();
    this.#chars = 0;
    return echoes;
  }
}
