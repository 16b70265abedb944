// The stage's golden test, run natively:  node --test
// Every line of golden/input.txt is an input event's value, every line of
// golden/output.txt an output event's value, in order; outputs keep the key, headers and
// timestamp of their input.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as app from "./app.js";
import { Event, run } from "./weir.js";

const lines = (name) => {
  const data = readFileSync(new URL(`golden/${name}`, import.meta.url));
  const out = [];
  let start = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 10) {
      out.push(new Uint8Array(data.subarray(start, i)));
      start = i + 1;
    }
  }
  if (start < data.length) out.push(new Uint8Array(data.subarray(start)));
  return out;
};

test("golden", () => {
  const { outputs, failures } = run(app, lines("input.txt"));
  assert.deepEqual(failures, []);
  assert.deepEqual(outputs.map((e) => Buffer.from(e.value)), lines("output.txt").map((v) => Buffer.from(v)));
});

test("outputs keep their input's key, headers and timestamp", () => {
  const inputs = lines("input.txt").map(
    (v, i) => new Event(v, { key: `k${i}`, headers: [["h", "v"]], timestamp: 1000n + BigInt(i) }),
  );
  const { outputs } = run(app, inputs);
  for (const out of outputs) {
    const i = Number(new TextDecoder().decode(out.key).slice(1));
    assert.equal(out.timestamp, 1000n + BigInt(i));
    assert.deepEqual(out.headers.map(([n, v]) => [n, Buffer.from(v).toString()]), [["h", "v"]]);
  }
});

test("describe", () => {
  assert.equal(app.name, "{{name}}");
  run(app, []); // the defaults of every declared setting are valid
});

test("an empty value is rejected", () => {
  const { outputs, counts, failures } = run(app, ["a", "", "DEBUG x"]);
  assert.deepEqual(outputs.map((e) => Buffer.from(e.value).toString()), ["a"]);
  assert.deepEqual(counts, [1, 0, 0]);
  assert.deepEqual(failures, [{ index: 1, kind: "reject", reason: "empty value" }]);
});

test("settings", () => {
  const { outputs } = run(app, ["Debug x", "y"], [["ignore-case", "true"]]);
  assert.deepEqual(outputs.map((e) => Buffer.from(e.value).toString()), ["y"]);
});
