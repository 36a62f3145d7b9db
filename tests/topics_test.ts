import { deepStrictEqual, ok, strictEqual } from "node:assert";
import {
  isBlocked,
  isValidFilter,
  keepAliveTopic,
  matchesFilter,
  notificationFilter,
  notificationTopic,
  parseRequest,
  serviceType,
  shortTopic,
} from "../lib/topics.ts";

const ID = "e0ff50a097c0";

Deno.test("service type is the third part of the bus name", () => {
  strictEqual(serviceType("com.victronenergy.pvinverter.cgwacs_ttyUSB0_mb1"), "pvinverter");
  strictEqual(serviceType("com.victronenergy.settings"), "settings");
  strictEqual(serviceType("org.freedesktop.DBus"), undefined);
  strictEqual(serviceType("com.victronenergy."), undefined);
});

Deno.test("notification topics follow N/<id>/<type>/<instance>/<path>", () => {
  strictEqual(
    notificationTopic(ID, "pvinverter", 20, "/Ac/Power"),
    `N/${ID}/pvinverter/20/Ac/Power`,
  );
});

Deno.test("read, write and keep-alive requests parse", () => {
  deepStrictEqual(parseRequest(`R/${ID}/pvinverter/20/Ac/Power`, ID), {
    kind: "read",
    type: "pvinverter",
    instance: 20,
    path: "/Ac/Power",
  });
  deepStrictEqual(parseRequest(`W/${ID}/vebus/257/Hub4/L1/AcPowerSetpoint`, ID), {
    kind: "write",
    type: "vebus",
    instance: 257,
    path: "/Hub4/L1/AcPowerSetpoint",
  });
  deepStrictEqual(parseRequest(`R/${ID}/keepalive`, ID), { kind: "keepalive" });
  deepStrictEqual(parseRequest(`R/${ID}/system/0/Serial`, ID), {
    kind: "keepalive",
    read: { kind: "read", type: "system", instance: 0, path: "/Serial" },
  });
  strictEqual((parseRequest(`W/${ID}/system/0/Serial`, ID) as { kind: string }).kind, "write");
});

Deno.test("malformed requests come back as a reason", () => {
  const bad = [
    `N/${ID}/system/0/Serial`,
    `R/other/system/0/Serial`,
    `R/${ID}/system/+/Serial`,
    `R/${ID}/#`,
    `R/${ID}/system/0`,
    `R/${ID}/system/x/Serial`,
    `R/${ID}/system/-1/Serial`,
    `R/${ID}/system/99999999999/Serial`,
    `R/${ID}/system/0/Dc//Power`,
    `R/${ID}/system/0/Dc/`,
    `R/${ID}//0/Serial`,
    `W/${ID}/keepalive`,
    "",
  ];
  for (const topic of bad) strictEqual(typeof parseRequest(topic, ID), "string", topic);
});

Deno.test("internal items are blocked", () => {
  strictEqual(isBlocked("vebus", "/Interfaces/Mk2/Tunnel"), true);
  strictEqual(isBlocked("paygo", "/LVD/Threshold"), true);
  strictEqual(isBlocked("vebus", "/Ac/Power"), false);
});

Deno.test("MQTT filters: validity and matching", () => {
  for (const good of ["#", "+", "battery/+/Soc", "system/0/#", "a/+/+/d"]) {
    strictEqual(isValidFilter(good), true, good);
  }
  for (const bad of ["", "a/#/b", "a#", "a+/b", "#/a"]) strictEqual(isValidFilter(bad), false, bad);
  strictEqual(matchesFilter("battery/+/Soc", "battery/256/Soc"), true);
  strictEqual(matchesFilter("battery/+/Soc", "battery/256/Soc/x"), false);
  strictEqual(matchesFilter("battery/+/Soc", "battery/256"), false);
  strictEqual(matchesFilter("system/0/#", "system/0/Dc/Battery/Soc"), true);
  strictEqual(matchesFilter("system/0/#", "system/0"), true);
  strictEqual(matchesFilter("system/0/#", "system/1/Dc"), false);
  strictEqual(matchesFilter("#", "anything/at/all"), true);
});

Deno.test("a client's topics: what a GX publishes, its keep-alive, and items as users write them", () => {
  strictEqual(notificationFilter(ID), `N/${ID}/#`);
  strictEqual(notificationFilter("+"), "N/+/#");
  strictEqual(keepAliveTopic(ID), `R/${ID}/keepalive`);
  deepStrictEqual(parseRequest(keepAliveTopic(ID), ID), { kind: "keepalive" });
  strictEqual(
    shortTopic(notificationTopic(ID, "battery", 512, "/Dc/0/Voltage")),
    "battery/512/Dc/0/Voltage",
  );
  strictEqual(shortTopic(`N/${ID}/heartbeat`), "heartbeat");
  ok(matchesFilter("battery/+/Dc/#", shortTopic(`N/${ID}/battery/512/Dc/0/Voltage`)));
});
