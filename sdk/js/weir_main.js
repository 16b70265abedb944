// The component's entry point: binds the stage module app.js to weir:stage@0.2.0.
// The author never edits it; everything but the host calls is in weir.js.
import * as app from "./app.js";
import { declared, init as initApp, processBatch, setLogSink } from "./weir.js";
import { log as hostLog } from "weir:stage/log@0.2.0";

setLogSink((level, message) => hostLog(level, message));

// The component has no stdout: console output goes to the host's log, a call a line.
const show = (a) => (typeof a === "string" ? a : a instanceof Error ? `${a}\n${a.stack}` : safeJson(a));
const safeJson = (a) => {
  try {
    return JSON.stringify(a, (_, v) => (typeof v === "bigint" ? String(v) : v));
  } catch {
    return String(a);
  }
};
for (const [method, level] of [["log", "info"], ["info", "info"], ["debug", "debug"], ["warn", "warn"], ["error", "error"]]) {
  console[method] = (...args) => hostLog(level, args.map(show).join(" "));
}

const name = String(app.name ?? "js-stage");
const version = String(app.version ?? "0.1.0");
const settings = declared(app);
const processEvent = app.process;

export function describe() {
  return { name, version, settings };
}

export function init(given) {
  initApp(app, given);
}

// An exception other than Reject or Retry traps the instance, as a panic does in Rust; its
// message and stack go to the host's log first.
export function process(batch) {
  try {
    return processBatch(processEvent, batch);
  } catch (e) {
    hostLog("error", `process threw: ${show(e)}`);
    throw e;
  }
}
