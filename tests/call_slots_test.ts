/** CallSlots: how many of our calls dbus-daemon holds, in all and per service. */
import { strictEqual } from "node:assert";
import { CallSlots } from "../lib/call_slots.ts";

Deno.test("calls go while the daemon holds fewer than the limits, per service and in all", () => {
  const slots = new CallSlots(5, 2);
  let serial = 0;
  const send = (service: string) => {
    strictEqual(slots.free(service), true, service);
    slots.sent(++serial, service);
    return serial;
  };
  const hung = [send(":1.9"), send(":1.9")];
  strictEqual(slots.free(":1.9"), false, "a service holds at most 2");
  strictEqual(slots.held(":1.9"), 2);
  const other = [send(":1.3"), send(":1.3"), send(":1.4")];
  strictEqual(slots.free(":1.5"), false, "5 in all");
  // A late reply frees its place; a reply to a call not ours (or twice) frees nothing.
  slots.answered(other[0]);
  slots.answered(other[0]);
  slots.answered(999);
  strictEqual(slots.free(":1.5"), true);
  strictEqual(slots.held(":1.3"), 1);
  send(":1.5");
  strictEqual(slots.free(":1.6"), false);
  // The hung service leaves the bus: the daemon forgets its calls, and so do we.
  slots.left(":1.9");
  strictEqual(slots.held(":1.9"), 0);
  strictEqual(slots.free(":1.9"), true);
  slots.answered(hung[0]);
  strictEqual(slots.held(":1.3"), 1, "other services keep their count");
  send(":1.6");
  send(":1.6");
  strictEqual(slots.free(":1.7"), false);
});
