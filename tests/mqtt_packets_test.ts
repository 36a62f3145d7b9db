/** The bridge's own PUBLISH packets, read back by the MQTT client library's parser. */
import { deepStrictEqual } from "node:assert";
import { Buffer } from "node:buffer";
import mqttPacket from "mqtt-packet";
import { encodePublishes, type Publish } from "../lib/mqtt_packets.ts";

function parse(bytes: Uint8Array): Publish[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: Publish[] = [];
  parser.on("packet", (packet) => {
    if (packet.cmd !== "publish") throw new Error(`a ${packet.cmd} packet`);
    deepStrictEqual([packet.qos, packet.dup], [0, false]);
    packets.push({
      topic: packet.topic,
      payload: Buffer.from(packet.payload).toString(),
      retain: packet.retain,
    });
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
