/** What MQTT 5 answers say, and where they may go. */
import { deepStrictEqual, strictEqual } from "node:assert";
import { type Answer, answerPayload, answerProblem } from "../lib/answers.ts";

Deno.test("answers are JSON with the value as the N topic carries it", () => {
  const cases: [Answer, unknown][] = [
    [{ status: "ok", value: "-200.0" }, { status: "ok", value: -200 }],
    [{ status: "ok", value: '"******"' }, { status: "ok", value: "******" }],
    [{ status: "ok", values: [["/A", "1"], ["/B", '{"x": [1]}']] }, {
      status: "ok",
      values: { "/A": 1, "/B": { x: [1] } },
    }],
    [{ status: "ok", values: [] }, { status: "ok", values: {} }],
    [{ status: "ok", fullPublishCompleted: 1795690000 }, {
      status: "ok",
      "full-publish-completed": 1795690000,
    }],
    [{ status: "ok" }, { status: "ok" }],
    [{ status: "refused", code: 1 }, { status: "refused", code: 1 }],
    [{ status: "error", error: 'bad "quote"\n\ud800' }, {
      status: "error",
      error: 'bad "quote"\n\ud800',
    }],
  ];
  for (const [answer, parsed] of cases) deepStrictEqual(JSON.parse(answerPayload(answer)), parsed);
  // Doubles keep their form: -200.0 stays a double for the client.
  strictEqual(
    answerPayload({ status: "ok", value: "-200.0" }),
    '{"status": "ok", "value": -200.0}',
  );
});

Deno.test("answers never go to the bridge's own topics, the broker's, or a topic it would refuse", () => {
  for (const topic of ["N/abc/battery/0/Soc", "R/abc/keepalive", "W/abc/x/0/Y", "$SYS/x"]) {
    strictEqual(answerProblem(topic), "an N/, R/, W/ or $ topic cannot take answers", topic);
  }
  strictEqual(answerProblem("reply/+"), "a wildcard '+' in the topic");
  strictEqual(answerProblem("a\u0000b"), "U+0000 in the topic");
  for (const topic of ["reply/me", "N", "Nx/y", "app/W/1", "r/abc", "x".repeat(1024)]) {
    strictEqual(answerProblem(topic, new Uint8Array(1024)), undefined, topic);
  }
  // Long ones would let waiting answers take the bridge's memory.
  strictEqual(answerProblem("x".repeat(1025)), "a response topic over 1024 characters");
  strictEqual(answerProblem("x", new Uint8Array(1025)), "correlation data over 1024 bytes");
});
