// The component's entry point: binds the stage module app.js to weir:stage@0.3.0 (or to
// @0.2.0, for a project whose wit/stage.wit is that contract). The author never edits it;
// everything but the host calls is in weir.js.
//
// The host's imports come through weir_bind.js, which build.sh writes for the build: the
// `log` of the project's contract, and `state` and `time` only when the stage's sources use
// them (else null), since componentize-js imports every function of the world it is given
// and the host would keep a store for a stage that never uses one.
import * as app from "./app.js";
import { StateError, Timer, declared, init as initApp, processBatch, setBackend, setLogSink, timerBatch } from "./weir.js";
import { hostLog, hostState, hostTime } from "./weir_bind.js";

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
const processEvents = app.processBatch ?? null;
const onTimerApp = app.onTimer ?? null;

// A host error, thrown or in a batched call's results, as weir.js's StateError.
const stateError = (e) => (e.tag === "limit" ? new StateError("limit", e.val) : new StateError(e.tag));
const refused = (e) => {
  const payload = e && e.payload !== undefined ? e.payload : e;
  if (payload && typeof payload.tag === "string") return stateError(payload);
  throw e;
};
const results = (rs) => rs.map((r) => (r.tag === "err" ? stateError(r.val) : r.tag === "ok" ? (r.val ?? null) : null));
const cut = (what) => () => {
  throw new Error(`this component was built without ${what}: build.sh found no use of \`${what}\` from weir.js in the stage's sources`);
};
const withCut = (what, names) => Object.fromEntries(names.map((n) => [n, cut(what)]));
const hostTimer = (t) => ({ key: t.key, at: t.at, clock: t.clock });

setBackend({
  ...(hostState
    ? {
        get: (k) => hostState.get(k) ?? null,
        getMany: (ks) => hostState.getMany(ks).map((v) => v ?? null),
        set: (k, v, ttlMs) => {
          try {
            hostState.set({ key: k, value: v, ttlMs: ttlMs ?? undefined });
          } catch (e) {
            throw refused(e);
          }
        },
        setMany: (es) => results(hostState.setMany(es.map(([k, v, t]) => ({ key: k, value: v, ttlMs: t ?? undefined })))),
        delete: (k) => hostState.del(k),
        deleteMany: (ks) => hostState.deleteMany(ks),
        increment: (k, by) => {
          try {
            return hostState.increment(k, by);
          } catch (e) {
            throw refused(e);
          }
        },
        incrementMany: (cs) => results(hostState.incrementMany(cs)),
        scan: (p, after, limit) => {
          const page = hostState.scan(p, after ?? undefined, limit);
          return { entries: page.entries, next: page.next ?? null };
        },
      }
    : withCut("state", ["get", "getMany", "set", "setMany", "delete", "deleteMany", "increment", "incrementMany", "scan"])),
  ...(hostTime
    ? {
        watermarks: () => Array.from(hostTime.watermarks()),
        now: () => hostTime.now(),
        setTimer: (t) => {
          try {
            hostTime.setTimer(hostTimer(t));
          } catch (e) {
            throw refused(e);
          }
        },
        setTimers: (ts) => results(hostTime.setTimers(ts.map(hostTimer))),
        cancelTimer: (t) => hostTime.cancelTimer(hostTimer(t)),
      }
    : withCut("time", ["watermarks", "now", "setTimer", "setTimers", "cancelTimer"])),
});

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
    return processBatch(processEvent, batch, processEvents);
  } catch (e) {
    hostLog("error", `process threw: ${show(e)}`);
    throw e;
  }
}

// Timers that fired (0.3): what they became, as a batch. A stage that exports no onTimer
// sets no timer, and is never called.
export function onTimer(fired) {
  try {
    return timerBatch(onTimerApp, fired.map((t) => new Timer(t.key, t.at, t.clock)));
  } catch (e) {
    hostLog("error", `onTimer threw: ${show(e)}`);
    throw e;
  }
}
