/**
 * Unit: when the bus side of the latency budget rests, and when it reads on.
 * The socket is a recorder: the pacer only pauses and resumes it.
 */
import { deepStrictEqual } from "node:assert";
import { charged, ReadPacer } from "../lib/read_pacer.ts";
import { sleep } from "./support/gx.ts";

function recorder() {
  const calls: string[] = [];
  return {
    calls,
    socket: { pause: () => calls.push("pause"), resume: () => calls.push("resume") },
  };
}

/** `count` messages of `length` bytes, as a read cuts them. */
const messages = (count: number, length: number) => Array(count).fill({ length });

Deno.test("a small read on a busy bus rests, and the socket reads again within the budget", async () => {
  const { calls, socket } = recorder();
  const pacer = new ReadPacer(socket, 50, () => false);
  await sleep(20);
  pacer.afterRead(2_000, messages(10, 200)); // 10 messages in 20 ms: 500 a second
  deepStrictEqual(calls, ["pause"]);
  await sleep(200); // the rest is at most 50 ms; timers may be late on a busy machine
  deepStrictEqual(calls, ["pause", "resume"]);
});

/**
 * Reads as strace saw dbus-daemon hand them over from a backlog (50 x 210, 77 x 187, 10 x 4,531
 * bytes), and 705-byte ones, which Linux charges 2,304 each (a flat overhead missed those).
 */
const HANDED_OVER = [[50, 210], [77, 187], [10, 4_531], [23, 705]];

Deno.test("after a full socket, what dbus-daemon hands over per read is read on at once", async () => {
  const { calls, socket } = recorder();
  const pacer = new ReadPacer(socket, 100, () => false);
  await sleep(20);
  pacer.afterRead(160 * 210, messages(160, 210)); // the daemon's 208 KB send buffer, full
  for (const [count, length] of HANDED_OVER) {
    await sleep(20);
    pacer.afterRead(count * length, messages(count, length));
  }
  deepStrictEqual(calls, [], "no rest: each read may be all the daemon gave of a backlog");
  await sleep(20);
  pacer.afterRead(10 * 210, messages(10, 210)); // the backlog is through
  deepStrictEqual(calls, ["pause"]);
});

Deno.test("a read as large, with no full socket before it, is a busy bus: it rests", async () => {
  for (const [count, length] of [...HANDED_OVER, [75, 210]]) {
    const { calls, socket } = recorder();
    const pacer = new ReadPacer(socket, 100, () => false);
    await sleep(20);
    pacer.afterRead(count * length, messages(count, length));
    deepStrictEqual(calls, ["pause"], `${count} x ${length} bytes`);
    pacer.wake();
  }
});

Deno.test("a read that fills the buffer is read on, and counts with the rest of the socket", () => {
  const { calls, socket } = recorder();
  const pacer = new ReadPacer(socket, 100, () => false);
  // 4,531-byte messages: a full socket is ~170 KB, three reads' worth.
  pacer.afterRead(65_536, messages(14, 4_531));
  pacer.afterRead(65_536, messages(14, 4_531));
  deepStrictEqual(calls, []);
  pacer.afterRead(30_000, messages(7, 4_531));
  deepStrictEqual(calls, [], "the socket was full: the daemon may hold more");
  pacer.afterRead(4_531, messages(1, 4_531));
  deepStrictEqual(calls, ["pause"]);
  pacer.wake();
  pacer.afterRead(65_536, messages(14, 4_531));
  pacer.afterRead(20_000, messages(4, 4_531));
  deepStrictEqual(calls, ["pause", "resume", "pause"], "short of a full socket: a rest");
});

Deno.test("one message just after a burst is no quiet bus: the rest stays short", async () => {
  const { calls, socket } = recorder();
  const pacer = new ReadPacer(socket, 100, () => false);
  pacer.afterRead(160 * 210, messages(160, 210)); // a full socket, then the daemon's backlog
  for (let i = 0; i < 3; i++) pacer.afterRead(50 * 210, messages(50, 210));
  await sleep(15);
  pacer.afterRead(4_531, messages(1, 4_531));
  deepStrictEqual(calls, ["pause"]);
  await sleep(60); // the recent rate asks for ~20 ms; this one read alone for the whole 100
  deepStrictEqual(calls, ["pause", "resume"]);
});

Deno.test("no rest while a call waits for its answer, and a call ends a rest", async () => {
  const { calls, socket } = recorder();
  let awaiting = true;
  const pacer = new ReadPacer(socket, 100, () => awaiting);
  await sleep(20);
  pacer.afterRead(200, messages(1, 200));
  deepStrictEqual(calls, []);
  awaiting = false;
  await sleep(20);
  pacer.afterRead(200, messages(1, 200));
  deepStrictEqual(calls, ["pause"]);
  pacer.wake();
  deepStrictEqual(calls, ["pause", "resume"]);
});

Deno.test("what Linux charges a message: power-of-two allocations up to a page, pages beyond", () => {
  deepStrictEqual([187, 210, 705, 4_531].map(charged), [768, 1_280, 2_304, 5_376]);
});
