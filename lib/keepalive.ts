/**
 * Keep-alive, all of it: the spec's rule (quiet until the first request,
 * alive for the interval after the latest one, then quiet again; an interval
 * of 0 means always alive), the full republish with its rate limit and echo
 * tokens, the heartbeat and the expiry. Time comes from an injected clock and
 * every publish is asked of `KeepAliveActions`, so main.ts does the I/O and
 * tests run on a fake clock.
 */

import type { Answer } from "./answers.ts";

/** What the keep-alive asks of the bridge. */
export interface KeepAliveActions {
  /** The first request after a quiet spell. */
  woke(): void;
  /** Publish every value. */
  publishAll(): void;
  /** Publish `full_publish_completed` once, with this echo token if one was asked for. */
  completed(unixSeconds: number, echo: string | undefined): void;
  /** Publish the heartbeat. */
  beat(unixSeconds: number): void;
  /** No request within the interval: clear the topics, or just stop. */
  expired(): void;
  /** A hint in a request that is not honoured, for the log. */
  problem(message: string): void;
}

/** Milliseconds now, and a timer that returns its cancel. */
export interface Clock {
  now(): number;
  after(ms: number, run: () => void): () => void;
}

const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, run) {
    const timer = setTimeout(run, ms);
    return () => clearTimeout(timer);
  },
};

/** How often the heartbeat goes out while alive. */
export const HEARTBEAT_MS = 3000;
/** Echo tokens longer than this are not echoed (clients use short ones, e.g. a UUID). */
const MAX_ECHO_LENGTH = 1024;
/** MQTT 5 answers waiting for the next full republish; the oldest are answered with an error. */
const MAX_WAITING_ANSWERS = 10_000;

export class KeepAlive {
  #alive: boolean;
  /** When the current alive period ends, on the clock. */
  #deadline = -Infinity;
  readonly #limiter = new RepublishLimiter();
  readonly #echoes = new WaitingEchoes();
  readonly #answers: Array<(answer: Answer) => void> = [];
  #cancelBeat?: () => void;
  #cancelExpiry?: () => void;
  /** Set while a full republish waits for the rate limit. */
  #cancelRepublish?: () => void;

  constructor(
    readonly intervalMs: number,
    private readonly actions: KeepAliveActions,
    private readonly clock: Clock = systemClock,
  ) {
    this.#alive = intervalMs === 0;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** The bridge is up: an always-alive one beats from now on. */
  start(): void {
    if (this.#alive) this.#startHeartbeat();
  }

  stop(): void {
    for (const cancel of [this.#cancelBeat, this.#cancelExpiry, this.#cancelRepublish]) cancel?.();
    this.#cancelBeat = this.#cancelExpiry = this.#cancelRepublish = undefined;
  }

  /**
   * A keep-alive (`R/<id>/keepalive`, or a read of `system/0/Serial`) with its
   * payload: plain, or `{"keepalive-options": [...]}`. It republishes unless
   * it asks not to; one that wakes the bridge always does. `answer` (MQTT 5)
   * is told once: after the full publish, or at once when there is none.
   */
  onKeepAlive(payload: string, answer?: (answer: Answer) => void): void {
    const asked = parseKeepAliveOptions(payload);
    if (asked.echo !== undefined && asked.echo.length > MAX_ECHO_LENGTH) {
      this.actions.problem(`echo token over ${MAX_ECHO_LENGTH} characters; not echoed`);
      asked.echo = undefined;
    }
    if (!this.#renew() && !asked.republish) return answer?.({ status: "ok" });
    if (answer) this.#waitForFullPublish(answer);
    this.#fullPublish(asked.echo);
  }

  #waitForFullPublish(answer: (answer: Answer) => void): void {
    this.#answers.push(answer);
    if (this.#answers.length > MAX_WAITING_ANSWERS) {
      this.#answers.shift()!({
        status: "error",
        error: `over ${MAX_WAITING_ANSWERS} keep-alives wait for a full publish; this one dropped`,
      });
    }
  }

  /** A read or write of an item: it renews the interval, and republishes only when it wakes. */
  onItemRequest(): void {
    if (this.#renew()) this.#fullPublish(undefined);
  }

  /** Returns true when the request woke the bridge. */
  #renew(): boolean {
    const woke = !this.#alive;
    this.#alive = true;
    this.#deadline = this.clock.now() + this.intervalMs;
    if (woke) {
      this.actions.woke();
      this.#startHeartbeat();
    }
    this.#armExpiry();
    return woke;
  }

  /**
   * Every value, then full_publish_completed (with each echo asked for), so
   * clients know their picture is complete. Over the rate limit, the
   * republish happens when the next token comes, for every echo owed.
   */
  #fullPublish(echo: string | undefined): void {
    const dropped = echo === undefined ? 0 : this.#echoes.add(echo);
    if (dropped > 0) {
      this.actions.problem(`${dropped} echo tokens dropped, oldest first: too many waiting`);
    }
    if (this.#cancelRepublish) return;
    const now = this.clock.now();
    if (!this.#limiter.take(now)) {
      this.#cancelRepublish = this.clock.after(this.#limiter.nextAt() - now, () => {
        this.#cancelRepublish = undefined;
        this.#fullPublish(undefined);
      });
      return;
    }
    this.actions.publishAll();
    const echoed = this.#echoes.take();
    for (const e of echoed.length ? echoed : [undefined]) this.actions.completed(seconds(now), e);
    for (const answer of this.#answers.splice(0)) {
      answer({ status: "ok", fullPublishCompleted: seconds(now) });
    }
  }

  #startHeartbeat(): void {
    this.#cancelBeat?.();
    const beat = () => {
      this.actions.beat(seconds(this.clock.now()));
      this.#cancelBeat = this.clock.after(HEARTBEAT_MS, beat);
    };
    beat();
  }

  /** One timer at a time: a renewed interval re-arms it when it fires early. */
  #armExpiry(): void {
    if (this.#cancelExpiry || this.intervalMs === 0) return;
    this.#cancelExpiry = this.clock.after(this.#deadline - this.clock.now(), () => {
      this.#cancelExpiry = undefined;
      if (this.clock.now() < this.#deadline) return this.#armExpiry();
      this.#alive = false;
      this.#cancelBeat?.();
      this.#cancelBeat = undefined;
      this.actions.expired();
    });
  }
}

const seconds = (ms: number) => Math.floor(ms / 1000);

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
