import { deepStrictEqual, strictEqual } from "node:assert";
import { createLogger, LOG_BURST, LOG_PER_SECOND } from "../lib/log.ts";

Deno.test("a flood of warnings is cut to a burst, then a few a second, with a count", () => {
  const lines: string[] = [];
  let t = 0;
  const log = createLogger("info", (line) => lines.push(line), () => t);
  for (let i = 0; i < 1000; i++) log.warn("request", `bad ${i}`);
  strictEqual(lines.length, LOG_BURST);
  log.info("keepalive", "another context is not affected");
  strictEqual(lines.length, LOG_BURST + 1);
  t += 1000;
  for (let i = 0; i < 100; i++) log.warn("request", "more");
  strictEqual(lines.length, LOG_BURST + 1 + LOG_PER_SECOND);
  deepStrictEqual(
    lines[LOG_BURST + 1],
    `WARN  [request] more (${1000 - LOG_BURST} similar lines left out)`,
  );
  log.debug("request", "not shown at info");
  strictEqual(lines.length, LOG_BURST + 1 + LOG_PER_SECOND);
});
