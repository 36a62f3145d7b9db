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
 * Linux charges each message written on its own its bytes plus 500-900 of
 * bookkeeping (by allocation size) against the daemon's send buffer (208 KB
 * by default). Once a
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
  afterRead(bytes: number, messages: number): void {
    const now = performance.now();
    const charge = bytes + MESSAGE_OVERHEAD * messages;
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
 * What the kernel charges a message beyond its bytes (measured: see
 * ReadPacer); the larger figure, so that a read counts as full sooner, not later.
 */
const MESSAGE_OVERHEAD = 900;
/** A read's worth, in bytes as charged: under what the daemon hands over per read when it holds more. */
const READ_LOAD = 32 * 1024;
/**
 * A read over this share of READ_LOAD may be all the daemon hands over while
 * it holds more (~52 KB as charged): read on rather than rest.
 */
const MORE_WAITING = 1.25;
