/**
 * Integration: the capture of a real GX (22 services, 2,306 paths) loaded into
 * the simulated GX; every path comes out on MQTT with the right JSON type.
 */
import { deepStrictEqual, strictEqual } from "node:assert";
import { readFileSync } from "node:fs";
import { CAPTURE_FILE, loadCapture } from "./support/victron_services.ts";
import { PORTAL_ID, withGx } from "./support/gx.ts";

/** The JSON type a captured value must come out as. */
function expectedType(value: unknown): string {
  if (Array.isArray(value) && value.length === 0) return "null";
  if (value !== null && typeof value === "object" && !Array.isArray(value)) return "array"; // ay
  if (Array.isArray(value)) {
    // [key, variant] pairs are a dict; lists of dicts and of variants are lists.
    return Array.isArray(value[0]) && typeof value[0][0] === "string" ? "object" : "array";
  }
  return typeof value;
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  return Array.isArray(value) ? "array" : typeof value;
}

Deno.test("every captured path of a real GX is published with its JSON type", async () => {
  const rows = readFileSync(CAPTURE_FILE, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  strictEqual(rows.length, 2306);
  const services = loadCapture();
  strictEqual(services.length, 22);
  await withGx({ services }, async (gx) => {
    const tunnel = gx.topic("vebus", 257, "/Interfaces/Mk2/Tunnel");
    const expected = rows.map((row) => ({
      topic: gx.topic(row.service.split(".")[2], row.instance ?? 0, row.path),
      type: expectedType(row.value),
      raw: JSON.stringify(row.value),
    })).filter((e) => e.topic !== tunnel); // internal: never published
    strictEqual(expected.length, 2305);
    await gx.client.publish(`R/${PORTAL_ID}/keepalive`);
    await gx.client.waitFor(
      "all 2,305 public paths",
      () => expected.every((e) => gx.client.topics.has(e.topic)),
      20_000,
    );
    const wrong = expected.filter((e) => jsonType(gx.client.value(e.topic)) !== e.type);
    deepStrictEqual(wrong.map((e) => `${e.topic} ${e.raw}`), []);
    strictEqual(gx.client.topics.has(tunnel), false);
    // Integers stay integers, floats stay floats.
    const soc = gx.client.topics.get(gx.topic("battery", 256, "/Soc"));
    strictEqual(/^\{"value": \d+\.\d+\}$/.test(soc ?? ""), true, soc ?? "missing");
    strictEqual(gx.client.topics.get(gx.topic("vebus", 257, "/DeviceInstance")), '{"value": 257}');
    deepStrictEqual(gx.client.value(gx.topic("system", 0, "/AvailableTemperatureServices")), {
      nosensor: "No sensor",
      default: "Automatic",
    });
  });
});
