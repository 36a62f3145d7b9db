import { strictEqual } from "node:assert";
import { BridgeState } from "../lib/state.ts";

Deno.test("values older than what we hold are ignored; unchanged ones are not republished", () => {
  const state = new BridgeState("id");
  const s = state.add("com.victronenergy.battery.ttyO0", ":1.5")!;
  strictEqual(state.set(s, "/Soc", "50", 10)?.json, "50");
  strictEqual(state.set(s, "/Soc", "49", 5), undefined, "an older reply loses");
  strictEqual(state.set(s, "/Soc", "50", 11), undefined, "same value");
  strictEqual(state.set(s, "/Soc", "51", 12)?.json, "51");
  strictEqual(s.items.get("/Soc")!.topic, "", "no topic before the instance is known");
  state.ready(s, 256);
  strictEqual(s.items.get("/Soc")!.topic, "N/id/battery/256/Soc");
  strictEqual(state.byDevice("battery", 256), s);
  strictEqual(state.byOwner(":1.5"), s);
});

Deno.test("blocked items are never stored, secrets are masked unless invalid", () => {
  const state = new BridgeState("id");
  const vebus = state.add("com.victronenergy.vebus.ttyO1", ":1.6")!;
  strictEqual(state.set(vebus, "/Interfaces/Mk2/Tunnel", "1", 1), undefined);
  strictEqual(vebus.items.size, 0);
  const settings = state.add("com.victronenergy.settings", ":1.7")!;
  strictEqual(
    state.set(settings, "/Settings/Ble/Service/Pincode", '"123456"', 1)?.json,
    '"******"',
  );
  strictEqual(
    state.set(settings, "/Settings/Services/AccessPointPassword", "null", 1)?.json,
    "null",
  );
});

Deno.test("a second service on the same type/instance is reported; removal frees the indexes", () => {
  const state = new BridgeState("id");
  const a = state.add("com.victronenergy.tank.a", ":1.1")!;
  const b = state.add("com.victronenergy.tank.b", ":1.2")!;
  strictEqual(state.ready(a, 1), undefined);
  strictEqual(state.ready(b, 1), a);
  strictEqual(state.remove("com.victronenergy.tank.b"), b);
  strictEqual(state.byOwner(":1.2"), undefined);
  strictEqual(state.add("org.other", ":1.3"), undefined);
});

Deno.test("more secrets can be masked; the same path of another service is not", () => {
  const state = new BridgeState("id", ["settings/Settings/Vrm/Token"]);
  const settings = state.add("com.victronenergy.settings", ":1.7")!;
  strictEqual(state.set(settings, "/Settings/Vrm/Token", '"abc"', 1)?.json, '"******"');
  strictEqual(state.set(settings, "/Settings/Ble/Service/Pincode", '"1"', 1)?.json, '"******"');
  const system = state.add("com.victronenergy.system", ":1.8")!;
  strictEqual(state.set(system, "/Settings/Vrm/Token", '"abc"', 1)?.json, '"abc"');
  strictEqual(state.set(system, "/Settings/Ble/Service/Pincode", '"1"', 1)?.json, '"1"');
});
