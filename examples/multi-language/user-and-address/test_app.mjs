// The stage's golden test, run natively:  node --test
// Every line of golden/input.txt is an input event's value, every line of
// golden/output.txt an output event's value, in order.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import * as app from "./app.js";
import { run } from "./weir.js";

const lines = (name) =>
  readFileSync(new URL(`golden/${name}`, import.meta.url), "utf8")
    .split("\n")
    .filter((l) => l !== "");

test("golden", () => {
  const { outputs, failures } = run(app, lines("input.txt"));
  assert.deepEqual(failures, []);
  const decode = (b) => new TextDecoder().decode(b);
  assert.deepEqual(outputs.map((e) => decode(e.value)), lines("output.txt"));
  assert.deepEqual(outputs.map((e) => decode(e.key)), ["173.234.31.186", "52.80.34.196", "173.234.31.186"]);
});

test("a line without a user and an address is rejected", () => {
  const { outputs, failures } = run(app, ["Dec 10 sshd[1]: Accepted password for root"]);
  assert.deepEqual(outputs, []);
  assert.equal(failures.length, 1);
});
