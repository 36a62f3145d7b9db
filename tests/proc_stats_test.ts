/**
 * The bench's /proc readings: which process they are taken of when the
 * command only starts the bridge and waits.
 */
import { strictEqual } from "node:assert";
import { workerPid } from "../scripts/proc_stats.ts";
import { sleep } from "./support/gx.ts";

Deno.test("a wrapper that only waits is seen through: the readings are the worker's", async () => {
  // `; true` keeps sh waiting for sleep instead of becoming it (exec).
  const wrapper = new Deno.Command("sh", { args: ["-c", "sleep 30; true"] }).spawn();
  let worker = wrapper.pid;
  try {
    for (let tries = 0; worker === wrapper.pid && tries < 100; tries++) {
      await sleep(50); // until sh has started sleep, on a busy machine too
      worker = workerPid(wrapper.pid);
    }
    strictEqual(worker !== wrapper.pid, true, "the child, not the wrapper");
    strictEqual(Deno.readTextFileSync(`/proc/${worker}/comm`).trim(), "sleep");
    strictEqual(workerPid(worker), worker, "a process without children is its own worker");
  } finally {
    if (worker !== wrapper.pid) Deno.kill(worker); // sh waits for it, then ends
    else wrapper.kill();
    await wrapper.status;
  }
});
