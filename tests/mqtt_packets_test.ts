/** The bridge's own PUBLISH packets, read back by the MQTT client library's parser. */
import { deepStrictEqual, strictEqual } from "node:assert";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { encodePublishes, packetSizeProblem, type Publish } from "../lib/mqtt_packets.ts";

function parse(bytes: Uint8Array, protocolVersion: 4 | 5 = 4): Publish[] {
  const parser = mqttPacket.parser({ protocolVersion });
  const packets: Publish[] = [];
  parser.on("packet", (packet) => {
    if (packet.cmd !== "publish") throw new Error(`a ${packet.cmd} packet`);
    deepStrictEqual([packet.qos, packet.dup], [0, false]);
    const correlationData = packet.properties?.correlationData;
    packets.push({
      topic: packet.topic,
      payload: Buffer.from(packet.payload).toString(),
      retain: packet.retain,
      ...(correlationData && { correlationData: new Uint8Array(correlationData) }),
    });
    if (protocolVersion === 5 && !correlationData) {
      deepStrictEqual(packet.properties ?? {}, {}, "no other property");
    }
  });
  parser.on("error", (error) => {
    throw error;
  });
  parser.parse(Buffer.from(bytes));
  return packets;
}

const unexpected = (message: Publish, why: string) => {
  throw new Error(`${message.topic} refused: ${why}`);
};

Deno.test("PUBLISH packets of every length class read back as written", () => {
  const messages: Publish[] = [
    { topic: "N/abc/battery/0/Soc", payload: '{"value": 58.2}', retain: true },
    { topic: "N/abc/heartbeat", payload: '{"value": 1}', retain: false },
    { topic: "N/abc/settings/0/Settings/Gui/Empty", payload: "", retain: true },
    { topic: "N/abc/vebus/276/Ünïcode", payload: `{"value": "${"é".repeat(100)}"}`, retain: true },
    { topic: "N/abc/x/0/Long", payload: "x".repeat(20_000), retain: false },
    { topic: "N/abc/x/0/Longer", payload: "y".repeat(3_000_000), retain: true },
  ];
  deepStrictEqual(parse(encodePublishes(messages, unexpected)), messages);
  deepStrictEqual(parse(encodePublishes([], unexpected)), []);
});

const v5 = { v5: true, maxPacketBytes: 2 ** 28 };

Deno.test("MQTT 5 PUBLISH packets, with and without Correlation Data, read back as written", () => {
  const messages: Publish[] = [
    { topic: "N/abc/battery/0/Soc", payload: '{"value": 58.2}', retain: true },
    { topic: "reply/me", payload: '{"status": "ok"}', retain: false, correlationData: bytes(0) },
    { topic: "reply/me", payload: "", retain: false, correlationData: bytes(1) },
    { topic: "reply/Ünï", payload: "x".repeat(200), retain: false, correlationData: bytes(300) },
    {
      topic: "reply/max",
      payload: "y".repeat(20_000),
      retain: false,
      correlationData: bytes(65_535),
    },
    { topic: "N/abc/x/0/Longer", payload: "z".repeat(3_000_000), retain: true },
  ];
  deepStrictEqual(parse(encodePublishes(messages, unexpected, v5), 5), messages);
});

Deno.test("a packet over the broker's Maximum Packet Size is left out, the rest go", () => {
  const fits = { topic: "N/abc/a", payload: "x".repeat(80), retain: true };
  // 1 + 1 (remaining length) + 2 + 7 (topic) + 1 (properties) + 88 = 100 bytes.
  const exact = { topic: "N/abc/b", payload: "x".repeat(88), retain: true };
  const over = { topic: "N/abc/c", payload: "x".repeat(89), retain: true };
  const refused: string[] = [];
  const out = encodePublishes([fits, over, exact], (m, why) => refused.push(`${m.topic}: ${why}`), {
    v5: true,
    maxPacketBytes: 100,
  });
  deepStrictEqual(parse(out, 5), [fits, exact]);
  deepStrictEqual(refused, [
    "N/abc/c: a packet of 101 bytes, over the broker's maximum of 100",
  ]);
});

function bytes(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff);
}

Deno.test("a message's size is known before encoding, as the encoder counts it", () => {
  const messages: Publish[] = [
    { topic: "reply/me", payload: '{"status": "ok"}', retain: false },
    { topic: "reply/Ünï", payload: "é".repeat(100), retain: false, correlationData: bytes(20) },
    { topic: "r", payload: "y".repeat(200_000), retain: false, correlationData: bytes(300) },
  ];
  for (const v5 of [false, true]) {
    for (const message of messages) {
      const size = encodePublishes([message], unexpected, { v5, maxPacketBytes: 2 ** 28 }).length;
      strictEqual(packetSizeProblem(message, { v5, maxPacketBytes: size }), undefined);
      strictEqual(
        packetSizeProblem(message, { v5, maxPacketBytes: size - 1 }),
        `a packet of ${size} bytes, over the broker's maximum of ${size - 1}`,
      );
    }
  }
});
