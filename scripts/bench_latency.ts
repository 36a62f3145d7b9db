/**
 * The bench's latency probe, a subscriber in a thread of its own: its
 * timestamps are not held up by the simulator's sending or by the bench's
 * other work on the main thread (which added up to ~10 ms to the p99).
 *
 * Requests from the bench, each answered once done:
 *   {connect: url}
 *   {subscribe: topic}    answered when the retained messages have passed
 *   {start: epoch}        latencies of values sent from then on are kept
 *   {stop: true}          answered with {p50, p99} in ms (NaN when nothing came)
 *   {unsubscribe: topic}  so that it is idle while the next bridge starts
 */
/// <reference lib="deno.worker" />
import mqtt from "mqtt";

let client: mqtt.MqttClient;
let latencies: number[] = [];
let epoch = Infinity;
let lastMessageAt = 0;

self.onmessage = async (event: MessageEvent) => {
  const request = event.data;
  if (request.connect) {
    client = await mqtt.connectAsync(request.connect, { clientId: "bench-latency" });
    client.on("message", (_topic, payload) => {
      lastMessageAt = performance.now();
      const sentAt = Number(payload.toString().slice(10, -1)); // {"value": <ms>}
      if (sentAt >= epoch) latencies.push(performance.timeOrigin + performance.now() - sentAt);
    });
  } else if (request.subscribe) {
    lastMessageAt = performance.now();
    await client.subscribeAsync(request.subscribe);
    while (performance.now() - lastMessageAt < 300) await new Promise((r) => setTimeout(r, 20));
  } else if (request.start) {
    latencies = [];
    epoch = request.start;
  } else if (request.stop) {
    epoch = Infinity;
    latencies.sort((a, b) => a - b);
    const pct = (q: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
    self.postMessage({ p50: pct(0.5), p99: pct(0.99) });
    return;
  } else if (request.unsubscribe) {
    await client.unsubscribeAsync(request.unsubscribe);
  }
  self.postMessage("done");
};
