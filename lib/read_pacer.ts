import type { BusSocket } from "./bus_socket.ts";

/**
 * The latency budget on the bus side (--max-delay): a busy bus is read at
 * most once per `maxDelayMs`, everything queued at once. Each wake-up costs
 * far more than the bridge's work on a message (see README "Performance"),
 * and on a GX every change is a message of its own. After a read the socket
 * rests, not reading, so that messages arriving meanwhile wake no JavaScript
 * (the runtime's I/O thread still wakes for each: strace); then
 * it reads again, and if nothing came it waits as usual: the first message
 * after a quiet spell is read at once.
 *
 * A rest must end before dbus-daemon has more for us than the socket takes.
 * Linux charges each message written on its own against the daemon's send
 * buffer (208 KB by default) with its bookkeeping (see `charged`). Once a
 * write finds the socket full, the daemon keeps the rest and writes only when
 * the socket is writable, which Linux says when it holds under a quarter of
 * that buffer: ~50 small messages per read, however long the rest (strace at
 * 20,000 changes/s: 500 a second reached a bridge that rested 100 ms a read,
 * which fell seconds behind). So each rest is cut to what should bring a
 * read's worth (READ_LOAD) at the recent rate, and a read of more than that
 * means the daemon may be holding more: the bridge reads on.
 *
 * Answers are never held: it does not rest while a call waits for one, and a
 * call made while it rests wakes it.
 */
export class ReadPacer {
  #resting = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the last read came. */
  #since = performance.now();
  /** What the recent reads took, as the kernel charges it, fading over `maxDelayMs`. */
  #recent = 0;

  constructor(
    private readonly socket: Pick<BusSocket, "pause" | "resume">,
    private readonly maxDelayMs: number,
    private readonly awaitingAnswers: () => boolean,
  ) {}

  /**
   * After a read, decided at once: a socket paused later would already have
   * its next read under way, and that one would take the next message.
   */
  afterRead(bytes: number, messages: readonly { length: number }[]): void {
    const now = performance.now();
    let charge = bytes;
    for (const { length } of messages) charge += charged(length) - length;
    // The rate over the last budget or so, not this read's alone: the daemon
    // hands over in bursts, and one message just after a burst is no quiet bus.
    this.#recent = this.#recent * Math.exp((this.#since - now) / this.maxDelayMs) + charge;
    this.#since = now;
    // The rest that brings a read's worth at that rate.
    const restMs = Math.min(this.maxDelayMs, READ_LOAD * this.maxDelayMs / this.#recent);
    const more = charge >= MORE_WAITING * READ_LOAD;
    if (this.#resting || more || restMs < 1 || this.awaitingAnswers()) return;
    this.#resting = true;
    this.socket.pause();
    this.#timer = setTimeout(() => this.wake(), restMs);
  }

  wake(): void {
    if (!this.#resting) return;
    clearTimeout(this.#timer);
    this.#resting = false;
    this.socket.resume();
  }
}

/**
 * What Linux (x86-64; 32-bit ARM charges less) counts against the sender's
 * buffer for a message written on its own: up to ~3.7 KB, one allocation of
 * the bytes and 320 of shared info, rounded up to a power of two, plus 256 for
 * the buffer's head; beyond that the rest in whole pages. The strace figures
 * above fit it: 50 messages of 210 bytes a read, 1,280 each, are a quarter of
 * the buffer and the daemon's last write of ~2 KB.
 */
export function charged(length: number): number {
  const inPages = Math.min(length, pageAlign(Math.max(0, length - MAX_LINEAR)));
  const linear = length - inPages;
  return 2 ** Math.ceil(Math.log2(linear + SHARED_INFO)) + SKB_HEAD + pageAlign(inPages);
}

const PAGE = 4096;
const SHARED_INFO = 320;
const SKB_HEAD = 256;
/** What fits in one page with the shared info. */
const MAX_LINEAR = PAGE - SHARED_INFO;

function pageAlign(bytes: number): number {
  return Math.ceil(bytes / PAGE) * PAGE;
}

/** A read's worth, as charged: under what the daemon hands over per read when it holds more. */
const READ_LOAD = 32 * 1024;
/**
 * A read over this share of READ_LOAD may be all the daemon hands over while
 * it holds more: a quarter of its send buffer, 52 KB (x86-64); on 32-bit ARM
 * 40 KB of a 160 KB buffer, which `charged` counts as more. Read on rather than rest.
 */
const MORE_WAITING = 1.25;
