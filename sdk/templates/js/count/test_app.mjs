// The stage's golden test, run natively:  node --test
// Every line of golden/input.txt is an input event's value, every line of
// golden/output.txt an output event's value, in order: one per input, then the final counts
// the timers emit at the end of the input.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as app from "./app.js";
import { Event, run } from "./weir.js";

const lines = (name) =>
  readFileSync(new URL(`golden/${name}`, import.meta.url), "utf8").split("\n").filter((l) => l !== "");
const values = (events) => events.map((e) => new TextDecoder().decode(e.value));

test("golden", () => {
  const { outputs, counts, failures } = run(app, lines("input.txt"));
  assert.deepEqual(failures, []);
  assert.deepEqual(counts, counts.map(() => 1));
  assert.deepEqual(values(outputs), lines("output.txt"));
});

test("counts by key and keeps the event's key, headers and timestamp", () => {
  const inputs = [0, 1, 2].map((i) => new Event("x", { key: "k", headers: [["h", "v"]], timestamp: 1000n + BigInt(i) }));
  const { outputs } = run(app, inputs);
  assert.deepEqual(values(outputs), ["k,1", "k,2", "k,3", "k,3,final"]);
  assert.deepEqual(outputs.slice(0, 3).map((e) => e.timestamp), [1000n, 1001n, 1002n]);
  assert.deepEqual(outputs[0].headers.map(([n, v]) => [n, Buffer.from(v).toString()]), [["h", "v"]]);
});

test("describe", () => {
  assert.equal(app.name, "{{name}}");
  run(app, []);
});
