import { deepStrictEqual, strictEqual } from "node:assert";
import { changeLine, jsonLine, renderTable, type Row, valueText } from "../lib/watch_view.ts";

const T = "N/e0ff50a097c0/battery/256/Soc";

Deno.test("values are shown exactly as published", () => {
  strictEqual(valueText('{"value": 12.0}'), "12.0");
  strictEqual(valueText('{"value": 50, "min": 0, "max": 100}'), "50 (min 0, max 100)");
  strictEqual(valueText('{"value": 1.0, "default": 2.0}'), "1.0 (default 2.0)");
  strictEqual(valueText('{"value": "a, b", "min": "x"}'), '"a, b" (min "x")');
  strictEqual(valueText('{"value": [1, 2], "max": [3, 4]}'), "[1, 2] (max [3, 4])");
  strictEqual(valueText('{"value": {"a": 1, "b": 2}}'), '{"a": 1, "b": 2}');
  const long = `{"value": [${"1,".repeat(100_000)}1], "min": 0}`;
  strictEqual(valueText(long), long);
  strictEqual(valueText(`{"value": "${"a".repeat(2000)}"}`), `"${"a".repeat(2000)}"`);
  strictEqual(valueText('{"value":1,}'), '{"value":1,}');
  strictEqual(valueText('{"value": 1, "min": }'), '{"value": 1, "min": }');
  strictEqual(valueText("not json"), "not json");
  strictEqual(changeLine(T, '{"value": null}'), "battery/256/Soc null");
  strictEqual(changeLine(T, ""), "battery/256/Soc (removed)");
});

Deno.test("JSON records keep the payload's members and value text", () => {
  strictEqual(jsonLine(T, '{"value": 12.0}'), `{"topic": "${T}", "value": 12.0}`);
  strictEqual(jsonLine(T, "{}"), `{"topic": "${T}"}`);
  strictEqual(jsonLine(T, ""), `{"topic": "${T}", "removed": true}`);
  strictEqual(jsonLine(T, "[1]"), `{"topic": "${T}", "payload": "[1]"}`);
  deepStrictEqual(JSON.parse(jsonLine(T, '{"value": "a\\"b"}')), { topic: T, value: 'a"b' });
});

Deno.test("a JSON record cannot be made to name another topic or steer a terminal", () => {
  const forged = '{"value": 1, "topic": "N/x/system/0/Serial", "removed": true}';
  deepStrictEqual(JSON.parse(jsonLine(T, forged)), { topic: T, payload: forged });
  const posing = '{"payload": "not JSON"}';
  deepStrictEqual(JSON.parse(jsonLine(T, posing)), { topic: T, payload: posing });
  const value = "\u009b31m \u202e \u007f \u2028";
  const line = jsonLine(T + "\u202e", `{"value": "${value}"}`);
  strictEqual(/[\u007f-\u009f\u202e\u2028]/.test(line), false, line);
  deepStrictEqual(JSON.parse(line), { topic: T + "\u202e", value });
});

Deno.test("the table fits the terminal and marks fresh rows", () => {
  const rows = new Map<string, Row>([
    ["b/0/X", { text: "2", changedAt: 0 }],
    ["a/0/Y", { text: "1", changedAt: 9_000 }],
    ["c/0/Z", { text: "3", changedAt: 0 }],
  ]);
  deepStrictEqual(
    renderTable({ status: "status", rows, width: 40, height: 10, now: 10_000 }),
    ["status", "", "* a/0/Y       1", "  b/0/X       2", "  c/0/Z       3"],
  );
  const small = renderTable({ status: "s", rows, width: 12, height: 4, now: 10_000 });
  deepStrictEqual(small, ["s", "", "* a/0/Y   1", "  ... 2 more: narrow it with --filter"]);
});

Deno.test("what anyone may publish cannot steer the terminal or split a line", () => {
  const evil = "N/e0ff50a097c0/battery/256/\u202eSoc";
  strictEqual(
    changeLine(evil, "\x1b[2J12\nforged 1"),
    "battery/256/\\u202eSoc \\x1b[2J12\\nforged 1",
  );
  const rows = new Map<string, Row>([["a/0/\x07", { text: "\x1b]0;x\x07", changedAt: 0 }]]);
  const table = renderTable({ status: "s\x1b[H", rows, width: 80, height: 10, now: 10_000 });
  strictEqual(table.some((line) => /[\p{Cc}\u202e]/u.test(line)), false, table.join("|"));
  strictEqual(jsonLine(T, '{"value":\n1,\r\n"min": 0}').includes("\n"), false);
});
