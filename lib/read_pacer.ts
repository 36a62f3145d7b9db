import { type BusSocket, READ_BUFFER_BYTES } from "./bus_socket.ts";

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
 * A rest must end before the socket is full. Linux charges each message
 * written on its own against dbus-daemon's send buffer (208 KB by default;
 * 160 KB on 32-bit ARM) with its bookkeeping (see `charged`), so each rest is
 * cut to what should bring READ_LOAD, half the buffer or less, at the recent
 * rate. Once a write finds the socket full, the daemon keeps the rest and writes
 * only when the socket is writable, which Linux says when it holds under a
 * quarter of that buffer: ~50 small messages per read, however long the rest
 * (strace at 20,000 changes/s: 500 a second reached a bridge that rested
 * 100 ms a read, which fell seconds behind). A full socket is what shows
 * that: after one the bridge reads on, without rests, for as long as each
 * read brings what the daemon hands over from a backlog.
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
  /** What this wake-up's reads took so far, while each filled the read buffer. */
  #taken = 0;
  /** Reading on after a full socket: the daemon may hold more. */
  #draining = false;

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
    this.#taken += charge;
    // A read that fills the buffer leaves more in the socket, to be read in this wake-up.
    if (bytes >= READ_BUFFER_BYTES) return;
    const taken = this.#taken;
    this.#taken = 0;
    this.#draining = taken >= (this.#draining ? HANDED_OVER : FULL);
    // The rest that brings a read's worth at that rate.
    const restMs = Math.min(this.maxDelayMs, READ_LOAD * this.maxDelayMs / this.#recent);
    if (this.#resting || this.#draining || restMs < 1 || this.awaitingAnswers()) return;
    this.#resting = true;
    this.socket.pause();
    this.#timer = setTimeout(() => {
      // Spent: clearing it anyway runs Node's unenroll, 2% of the bridge at 2,000/s (perf).
      this.#timer = undefined;
      this.wake();
    }, restMs);
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
  // The power of two at or above: one bit beyond the highest of (n - 1).
  const allocation = 1 << (32 - Math.clz32(linear + SHARED_INFO - 1));
  return allocation + SKB_HEAD + pageAlign(inPages);
}

const PAGE = 4096;
const SHARED_INFO = 320;
const SKB_HEAD = 256;
/** What fits in one page with the shared info. */
const MAX_LINEAR = PAGE - SHARED_INFO;

function pageAlign(bytes: number): number {
  return Math.ceil(bytes / PAGE) * PAGE;
}

/**
 * A read's worth, as charged: half the daemon's send buffer on 32-bit ARM,
 * so that a rate twice the recent one still finds room (40% on x86-64).
 */
const READ_LOAD = 80 * 1024;
/**
 * A socket the daemon found full: its send buffer less a message (x86-64,
 * 208 KB; 32-bit ARM's 160 KB, which `charged` counts as more).
 */
const FULL = 150 * 1024;
/**
 * What the daemon hands over per read while it holds more, as charged: a
 * quarter of its buffer, 52 KB (x86-64); 40 KB on 32-bit ARM.
 */
const HANDED_OVER = 40 * 1024;
