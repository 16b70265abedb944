// weir: write a weir stage in JavaScript, one function per event.
//
// A stage is a module (app.js) that exports:
//
//   export const name = "my-stage";                 // what `describe` reports
//   export const version = "0.1.0";
//   export const settings = [                       // settings the pipeline file may give
//     { name: "prefix", type: "text", default: "", help: "put before every value" },
//   ];
//   export function init(settings) { ... }          // optional; typed values, defaults applied
//   export function process(event) { ... }          // required; once per input event
//
// `process` returns what the input event became:
//   - a Uint8Array or a string: one event with that value, keeping the input's key, headers
//     and timestamp;
//   - an Event (`event` itself passes the input through, `new Event(...)` makes a new one);
//   - an array of those: several events, in order;
//   - null, undefined or []: nothing (the event is filtered out).
// Throwing `new Reject(reason)` dead-letters the event; `new Retry(reason)` asks the host to
// retry it later. Any other exception traps the instance, as a panic does in Rust.
//
// A stage may instead export `processBatch(events)`, returning one outcome per event, in
// order: what `process` would return, or a Reject/Retry instance.
//
// Under the weir:stage@0.3.0 contract a stage also has the host's keyed state (`state`: get,
// set with a TTL, delete, increment, scan, and their batched forms) and event time (`time`:
// watermarks, the wall clock, timers), and may export `onTimer(fired)`, called with the
// Timers that fired; it returns events (or values) that flow on like the outputs of
// `process`. A StateError the host raises is a Reject whose reason the host recognises
// (`state-limit: ...`): left uncaught in `process`, it fails the event. Times, counters and
// TTLs are BigInts, as the contract's 64-bit numbers are.
//
// This module is plain JavaScript: it does the packing (an input event's value is a view into
// the batch's buffer, never a copy; outputs go into one output buffer; `counts` stays empty
// when every input became exactly one output) and runs the same under Node.js, for tests, as
// inside the component, where weir_main.js binds it to the contract. Under Node.js, state and
// timers are kept in memory (`run` starts each run with an empty store) and the watermark is
// the highest timestamp seen before each event, as the host works it out for a stage with
// one input.

export const NO_KEY = 0xffffffff;
export const NO_TIMESTAMP = 0xffffffffffffffffn;

const TYPES = ["text", "integer", "float", "boolean"];
const LEVELS = ["trace", "debug", "info", "warn", "error"];
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

export class Reject extends Error {
  constructor(reason = "") {
    super(String(reason));
    this.reason = String(reason);
  }
}

export class Retry extends Error {
  constructor(reason = "") {
    super(String(reason));
    this.reason = String(reason);
  }
}

let logSink = (level, message) => console.error(`[${level}] ${message}`);

/** Sets where log() writes: the component sends it to the host's log. */
export function setLogSink(sink) {
  logSink = sink;
}

/** Writes a line to the host's log (rate-limited by the host). */
export function log(message, level = "info") {
  if (!LEVELS.includes(level)) {
    throw new Error(`log level ${level} is not one of ${LEVELS.join(", ")}`);
  }
  logSink(level, String(message));
}

/** Upper-cases the ASCII letters of a byte array, leaving every other byte as it is. */
export function asciiUpper(bytes) {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    out[i] = c >= 97 && c <= 122 ? c - 32 : c;
  }
  return out;
}

/** The bytes of a string (UTF-8) or byte array. */
export function bytes(value) {
  if (typeof value === "string") return utf8.encode(value);
  if (value instanceof Uint8Array) return value;
  // A byte view made elsewhere (another realm's Uint8Array, a Buffer): the same bytes.
  if (ArrayBuffer.isView(value) && value.BYTES_PER_ELEMENT === 1) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new TypeError(`an output value must be a Uint8Array or a string, not ${typeof value}`);
}

/** Text of a byte array, decoded as UTF-8. */
export function text(value) {
  return fromUtf8.decode(value);
}

/**
 * An event: value (Uint8Array), key (Uint8Array or null), headers (array of [string,
 * Uint8Array]), timestamp (ms since the epoch as a BigInt, or null). An input event is a
 * view into its batch: the key and headers are read when first asked for, and an event
 * whose key and headers were never touched is copied to the output byte for byte.
 */
export class Event {
  constructor(value = new Uint8Array(0), { key = null, headers = [], timestamp = null } = {}) {
    this.value = bytes(value);
    this._key = key === null ? null : bytes(key);
    this._headers = headers;
    this.timestamp = timestamp;
    this._src = null; // the batch of an input event not yet read apart
    this._index = 0; // and its index there
  }

  static _view(batch, i, value, timestamp) {
    const e = Object.create(Event.prototype);
    e.value = value;
    e.timestamp = timestamp;
    e._src = batch;
    e._index = i;
    e._key = null;
    e._headers = null;
    return e;
  }

  get key() {
    if (this._src) this._materialize();
    return this._key;
  }
  set key(key) {
    if (this._src) this._materialize();
    this._key = key === null ? null : bytes(key);
  }
  get headers() {
    if (this._src) this._materialize();
    return this._headers;
  }
  set headers(headers) {
    if (this._src) this._materialize();
    this._headers = headers;
  }

  /** The value of the first header called `name`, or null. */
  header(name) {
    const h = this.headers.find(([n]) => n === name);
    return h ? h[1] : null;
  }

  _materialize() {
    const b = this._src;
    const i = this._index;
    this._src = null;
    const ev = b.events;
    const d = b.data;
    const kl = ev[6 * i + 3];
    this._key = kl === NO_KEY ? null : d.subarray(ev[6 * i + 2], ev[6 * i + 2] + kl);
    const hs = [];
    for (let h = ev[6 * i + 4], end = h + ev[6 * i + 5]; h < end; h++) {
      const f = b.headers;
      hs.push([
        fromUtf8.decode(d.subarray(f[4 * h], f[4 * h] + f[4 * h + 1])),
        d.subarray(f[4 * h + 2], f[4 * h + 2] + f[4 * h + 3]),
      ]);
    }
    this._headers = hs;
  }
}

/** A growable output batch: one buffer and the columns pointing into it. */
class Out {
  constructor(bytes, events) {
    this.data = new Uint8Array(Math.max(64, bytes));
    this.len = 0;
    this.events = new Uint32Array(Math.max(6, 6 * events));
    this.nev = 0;
    this.headers = [];
    this.timestamps = [];
    this.anyTs = false;
  }

  put(src) {
    const start = this.len;
    const end = start + src.length;
    if (end > this.data.length) {
      let cap = this.data.length * 2;
      while (cap < end) cap *= 2;
      const grown = new Uint8Array(cap);
      grown.set(this.data.subarray(0, start));
      this.data = grown;
    }
    this.data.set(src, start);
    this.len = end;
    return start;
  }

  pushEvent(vs, vl, ks, kl, first, count, timestamp) {
    if (this.nev + 6 > this.events.length) {
      const grown = new Uint32Array(this.events.length * 2);
      grown.set(this.events);
      this.events = grown;
    }
    const e = this.events;
    const n = this.nev;
    e[n] = vs;
    e[n + 1] = vl;
    e[n + 2] = ks;
    e[n + 3] = kl;
    e[n + 4] = count ? first : 0;
    e[n + 5] = count;
    this.nev = n + 6;
    if (timestamp === null) {
      this.timestamps.push(NO_TIMESTAMP);
    } else {
      this.timestamps.push(timestamp);
      this.anyTs = true;
    }
  }

  /** One event whose key and headers are copied from input `i` of batch `b`. */
  pushFrom(value, b, i, timestamp) {
    const ev = b.events;
    const d = b.data;
    const kl = ev[6 * i + 3];
    const ks = kl === NO_KEY ? 0 : this.put(d.subarray(ev[6 * i + 2], ev[6 * i + 2] + kl));
    const first = this.headers.length >> 2;
    const count = ev[6 * i + 5];
    const hd = b.headers;
    for (let h = ev[6 * i + 4], end = h + count; h < end; h++) {
      const ns = this.put(d.subarray(hd[4 * h], hd[4 * h] + hd[4 * h + 1]));
      const vs = this.put(d.subarray(hd[4 * h + 2], hd[4 * h + 2] + hd[4 * h + 3]));
      this.headers.push(ns, hd[4 * h + 1], vs, hd[4 * h + 3]);
    }
    const vs = this.put(value);
    this.pushEvent(vs, value.length, ks, kl, first, count, timestamp);
  }

  /** One event made of its own parts. */
  pushParts(value, key, headers, timestamp) {
    const ks = key === null ? 0 : this.put(key);
    const kl = key === null ? NO_KEY : key.length;
    const first = this.headers.length >> 2;
    for (const [name, hv] of headers) {
      const n = bytes(name);
      const v = bytes(hv);
      const ns = this.put(n);
      const vs = this.put(v);
      this.headers.push(ns, n.length, vs, v.length);
    }
    const vs = this.put(value);
    this.pushEvent(vs, value.length, ks, kl, first, headers.length, timestamp);
  }

  pushAny(item, b, i, timestamp) {
    if (item instanceof Event) {
      if (item._src) {
        this.pushFrom(bytes(item.value), item._src, item._index, item.timestamp);
      } else {
        this.pushParts(bytes(item.value), item._key, item._headers, item.timestamp);
      }
    } else {
      this.pushFrom(bytes(item), b, i, timestamp);
    }
  }

  batch() {
    return {
      data: this.data.subarray(0, this.len),
      events: this.events.subarray(0, this.nev),
      headers: new Uint32Array(this.headers),
      timestamps: this.anyTs ? new BigUint64Array(this.timestamps) : new BigUint64Array(0),
    };
  }
}

/**
 * Runs `process` on every event of a packed batch ({data, events, headers, timestamps}).
 * Returns {events, counts, failures} as the contract's `output` record.
 */
export function processBatch(process, input, batchFn = null) {
  // The bindings' arrays may come from another realm: views of the same memory, in this one.
  const batch = {
    data: new Uint8Array(input.data.buffer, input.data.byteOffset, input.data.byteLength),
    events: input.events,
    headers: input.headers,
    timestamps: input.timestamps,
  };
  const n = batch.events.length / 6;
  const out = new Out(batch.data.length + 64, n);
  const counts = new Uint32Array(n);
  const failures = [];
  let oneEach = true;
  const ev = batch.events;
  const data = batch.data;
  const ts = batch.timestamps;
  const view = (i) => {
    const vs = ev[6 * i];
    let t = ts.length ? ts[i] : NO_TIMESTAMP;
    if (t === NO_TIMESTAMP) t = null;
    return Event._view(batch, i, data.subarray(vs, vs + ev[6 * i + 1]), t);
  };
  let outcomes = null;
  if (batchFn) {
    const views = [];
    for (let i = 0; i < n; i++) views.push(view(i));
    outcomes = batchFn(views);
    if (!Array.isArray(outcomes) || outcomes.length !== n) {
      // The host would report the wrong count for the whole call; say which stage broke
      // the rule instead.
      throw new Error(`processBatch returned ${Array.isArray(outcomes) ? outcomes.length : outcomes} outcomes for ${n} events`);
    }
  }
  for (let i = 0; i < n; i++) {
    let t = ts.length ? ts[i] : NO_TIMESTAMP;
    if (t === NO_TIMESTAMP) t = null;
    let result;
    try {
      result = outcomes ? outcomes[i] : process(view(i));
      if (result instanceof Reject || result instanceof Retry) throw result;
    } catch (e) {
      if (e instanceof Reject || e instanceof Retry) {
        failures.push({ index: i, kind: e instanceof Reject ? "reject" : "retry", reason: e.reason });
        oneEach = false;
        continue;
      }
      throw e;
    }
    let count;
    if (result === null || result === undefined) {
      count = 0;
    } else if (Array.isArray(result)) {
      for (const item of result) out.pushAny(item, batch, i, t);
      count = result.length;
    } else {
      out.pushAny(result, batch, i, t);
      count = 1;
    }
    counts[i] = count;
    if (count !== 1) oneEach = false;
  }
  return { events: out.batch(), counts: oneEach ? new Uint32Array(0) : counts, failures };
}

function parse(setting, value) {
  switch (setting.type) {
    case "integer":
      if (!/^[+-]?\d+$/.test(value)) throw new Error(`setting \`${setting.name}\`: ${JSON.stringify(value)} is not an integer`);
      return Number(value);
    case "float": {
      const f = Number(value);
      if (value.trim() === "" || Number.isNaN(f) && value !== "NaN") throw new Error(`setting \`${setting.name}\`: ${JSON.stringify(value)} is not a number`);
      return f;
    }
    case "boolean":
      if (value !== "true" && value !== "false") throw new Error(`setting \`${setting.name}\`: ${JSON.stringify(value)} is not true or false`);
      return value === "true";
    default:
      return value;
  }
}

/** The module's declared settings, checked. */
export function declared(app) {
  const list = app.settings ?? [];
  for (const s of list) {
    if (!TYPES.includes(s.type ?? "text")) {
      throw new Error(`setting ${s.name}: type ${s.type} is not one of ${TYPES.join(", ")}`);
    }
  }
  return list.map((s) => ({
    name: s.name,
    type: s.type ?? "text",
    required: Boolean(s.required),
    default: s.default === undefined || s.default === null ? undefined : String(s.default),
    help: s.help ?? "",
  }));
}

/** Types `given` (pairs of text) against the module's declarations and calls its init. */
export function init(app, given) {
  const values = new Map(given);
  const typed = {};
  for (const s of declared(app)) {
    const value = values.has(s.name) ? values.get(s.name) : s.default;
    values.delete(s.name);
    if (value === undefined) {
      if (s.required) throw new Error(`setting \`${s.name}\` is required`);
      continue;
    }
    typed[s.name] = parse(s, value);
  }
  for (const k of values.keys()) throw new Error(`unknown setting \`${k}\``);
  if (app.init) app.init(typed);
}

/** Runs `onTimer` on the timers that fired: a batch of what they became, each value an
 * event of its own (no key, no timestamp). */
export function timerBatch(onTimer, fired) {
  let result = onTimer ? onTimer(fired) : null;
  if (result === null || result === undefined) result = [];
  else if (!Array.isArray(result)) result = [result];
  const out = new Out(64, result.length);
  for (const item of result) {
    if (item instanceof Event) {
      if (item._src) item._materialize();
      out.pushParts(bytes(item.value), item._key, item._headers, item.timestamp);
    } else {
      out.pushParts(bytes(item), null, [], null);
    }
  }
  return out.batch();
}

// -- keyed state ---------------------------------------------------------------------------

/**
 * Why the host refused a state operation (nothing was written): `kind` is "limit" (`text`
 * names it), "not-a-counter" or "overflow". A Reject whose reason the host recognises:
 * thrown out of `process`, it fails the event, a limit as `state-limit: ...` (dead-lettered
 * with the kind `state-limit`), the others as `state: ...`. The event must have made no write
 * that succeeded before the one refused: a failed event's writes still land.
 */
export class StateError extends Reject {
  constructor(kind, text = "") {
    super(
      kind === "limit"
        ? `state-limit: ${text}`
        : kind === "not-a-counter"
          ? "state: the value under the key is not a counter (8 bytes)"
          : "state: the counter would leave the range of a signed 64-bit integer",
    );
    this.kind = kind;
    this.text = text;
  }
}

// Entries a scan asks the host for per call. The contract allows up to 1,024; a smaller page
// bounds the memory a scan holds at once and the fuel of each host call.
export const SCAN_PAGE = 256;
// The end of time: the watermark once the input has ended, when every event-time timer fires.
export const END_OF_TIME = 0xffffffffffffffffn;

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const latin1 = (b) => {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
};
const unlatin1 = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const nowMs = () => BigInt(Date.now());

/**
 * State and timers in memory, for tests under Node.js: the host's semantics (TTLs, the 8-byte
 * counters, sorted prefix scans, one timer per key, time and clock) without its limits, fuel
 * or atomicity. The component replaces it with the host's (weir_main.js).
 */
class Memory {
  constructor() {
    this.data = new Map(); // latin1 key -> [value, expiry BigInt or null]
    this.timers = new Map(); // `${at}/${clock}/${key}` -> Timer
    this.marks = [];
  }
  live(k) {
    const found = this.data.get(k);
    if (!found) return null;
    if (found[1] !== null && found[1] <= nowMs()) {
      this.data.delete(k);
      return null;
    }
    return found[0];
  }
  get(key) {
    return this.live(latin1(key));
  }
  getMany(keys) {
    return keys.map((k) => this.get(k));
  }
  set(key, value, ttlMs) {
    this.data.set(latin1(key), [Uint8Array.from(value), ttlMs === null ? null : nowMs() + ttlMs]);
  }
  setMany(entries) {
    for (const [k, v, ttl] of entries) this.set(k, v, ttl);
    return entries.map(() => null);
  }
  delete(key) {
    this.data.delete(latin1(key));
  }
  deleteMany(keys) {
    for (const k of keys) this.delete(k);
  }
  increment(key, by) {
    const k = latin1(key);
    const value = this.live(k);
    if (value !== null && value.length !== 8) throw new StateError("not-a-counter");
    const before = value === null ? 0n : new DataView(value.buffer, value.byteOffset, 8).getBigInt64(0, true);
    const count = before + by;
    if (count < I64_MIN || count > I64_MAX) throw new StateError("overflow");
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigInt64(0, count, true);
    const expiry = this.data.has(k) ? this.data.get(k)[1] : null;
    this.data.set(k, [bytes, expiry]);
    return count;
  }
  incrementMany(counts) {
    return counts.map(([k, by]) => {
      try {
        return this.increment(k, by);
      } catch (e) {
        if (e instanceof StateError) return e;
        throw e;
      }
    });
  }
  scan(prefix, after, limit) {
    const p = latin1(prefix);
    const a = after === null ? null : latin1(after);
    const keys = [...this.data.keys()].filter((k) => k.startsWith(p) && (a === null || k > a)).sort();
    const entries = [];
    for (const k of keys) {
      const v = this.live(k);
      if (v !== null) entries.push([unlatin1(k), v]);
      if (entries.length === limit) break;
    }
    const last = entries.length ? latin1(entries[entries.length - 1][0]) : null;
    const more = entries.length === limit && keys.some((k) => k > last);
    return { entries, next: more ? entries[entries.length - 1][0] : null };
  }
  watermarks() {
    return this.marks.slice();
  }
  now() {
    return nowMs();
  }
  setTimer(t) {
    this.timers.set(`${t.at}/${t.clock}/${latin1(t.key)}`, t);
  }
  setTimers(timers) {
    for (const t of timers) this.setTimer(t);
    return timers.map(() => null);
  }
  cancelTimer(t) {
    this.timers.delete(`${t.at}/${t.clock}/${latin1(t.key)}`);
  }
  /** Removes and returns the event-time timers at or before `mark`, in time order. */
  due(mark) {
    const fired = [...this.timers.values()]
      .filter((t) => t.clock === "event" && t.at <= mark)
      .sort((x, y) => (x.at < y.at ? -1 : x.at > y.at ? 1 : latin1(x.key) < latin1(y.key) ? -1 : 1));
    for (const t of fired) this.cancelTimer(t);
    return fired;
  }
}

let backend = new Memory();

/** Sets what state and time call: the component sets the host's (weir_main.js). */
export function setBackend(b) {
  backend = b;
}

/** Empties the in-memory state and timers. */
export function reset() {
  backend = new Memory();
}

const ttl = (ttlMs) => {
  if (ttlMs === null || ttlMs === undefined) return null;
  const t = BigInt(ttlMs);
  if (t < 0n) throw new RangeError(`a TTL is not negative: ${t}`);
  return t;
};

/**
 * The stage's keyed state, kept by the host. Keys and values are Uint8Arrays (a string is
 * taken as UTF-8); each method is one host call. The writes a `process` call makes take effect
 * only if the call completes, and a stage that fails an event must have made no write for
 * it: check an event before writing for it.
 */
export const state = {
  /** The value under `key`, or null. */
  get: (key) => backend.get(bytes(key)),
  /** `get` of each key, in one host call. */
  getMany: (keys) => backend.getMany(keys.map(bytes)),
  /** Writes `value` under `key`, living `ttlMs` ms of processing time (for ever without it);
   * throws a StateError when the host refuses it. */
  set: (key, value, ttlMs = null) => backend.set(bytes(key), bytes(value), ttl(ttlMs)),
  /** `set` of each [key, value] or [key, value, ttlMs], in one host call: one result per
   * entry, null or the StateError that refused it. */
  setMany: (entries) => backend.setMany(entries.map(([k, v, t]) => [bytes(k), bytes(v), ttl(t)])),
  /** Removes `key`; removing an absent key does nothing. */
  delete: (key) => backend.delete(bytes(key)),
  /** `delete` of each key, in one host call. */
  deleteMany: (keys) => backend.deleteMany(keys.map(bytes)),
  /** Adds `by` to the counter under `key` (8 bytes, little-endian; absent counts as 0) and
   * returns the new count, a BigInt; throws a StateError. */
  increment: (key, by = 1n) => backend.increment(bytes(key), BigInt(by)),
  /** `increment` of each [key, by], in one host call: one result per key, the new count or
   * the StateError that refused it. */
  incrementMany: (counts) => backend.incrementMany(counts.map(([k, by]) => [bytes(k), BigInt(by)])),
  /** One page of a prefix scan: {entries: [[key, value]...] by increasing key, next: the
   * `after` of the next page, or null when done}. */
  scanPage: (prefix, after = null, limit = SCAN_PAGE) =>
    backend.scan(bytes(prefix), after === null ? null : bytes(after), limit),
  /** Every [key, value] whose key starts with `prefix`, by increasing key, paging through
   * the host's cursor. */
  *scan(prefix = new Uint8Array(0)) {
    let after = null;
    for (;;) {
      const page = state.scanPage(prefix, after);
      yield* page.entries;
      if (page.next === null || page.next === undefined) return;
      after = page.next;
    }
  },
};

// -- event time and timers -----------------------------------------------------------------

const CLOCKS = ["event", "processing"];

/** A timer: `key` (at most 1 KiB), `at` (ms since the Unix epoch, a BigInt) and `clock`:
 * "event" (fires once the stage's watermark reaches `at`) or "processing" (once the host's
 * wall clock does). */
export class Timer {
  constructor(key, at, clock = "event") {
    if (!CLOCKS.includes(clock)) throw new Error(`clock ${clock} is not one of ${CLOCKS.join(", ")}`);
    this.key = bytes(key);
    this.at = BigInt(at);
    this.clock = clock;
  }
  static event(key, at) {
    return new Timer(key, at, "event");
  }
  static processing(key, at) {
    return new Timer(key, at, "processing");
  }
}

/** Event time and timers. */
export const time = {
  /** The watermark each event of the batch in progress saw (BigInts), in input order (0n
   * before there is one); empty when no input carries event time, and in onTimer. */
  watermarks: () => backend.watermarks(),
  /** The host's wall clock, in ms since the Unix epoch (a BigInt). */
  now: () => backend.now(),
  /** Sets a timer (setting one that is set does nothing); throws a StateError over the
   * stage's state limits. */
  setTimer: (timer) => backend.setTimer(timer),
  /** Sets each timer, in one host call: one result per timer, null or the StateError. */
  setTimers: (timers) => backend.setTimers(timers),
  /** Cancels a timer; cancelling one that is not set does nothing. */
  cancelTimer: (timer) => backend.cancelTimer(timer),
};

// -- running a stage under Node.js ---------------------------------------------------------

/** Packs Events into a batch: how a test builds an input. */
export function pack(events) {
  const out = new Out(64, events.length);
  for (const e of events) out.pushParts(bytes(e.value), e.key, e.headers, e.timestamp);
  return out.batch();
}

/** The Events of a packed batch, read apart. */
export function unpack(batch) {
  const out = [];
  for (let i = 0; i < batch.events.length / 6; i++) {
    const vs = batch.events[6 * i];
    let t = batch.timestamps.length ? batch.timestamps[i] : NO_TIMESTAMP;
    const e = Event._view(batch, i, batch.data.subarray(vs, vs + batch.events[6 * i + 1]), t === NO_TIMESTAMP ? null : t);
    e._materialize();
    out.push(e);
  }
  return out;
}

/**
 * Runs a stage module on Events (or values) the way the host does: init with `settings`
 * (pairs of text) on an empty store, then one batch through `process` (or `processBatch`),
 * each event seeing as its watermark the highest timestamp before it. Then the event-time
 * timers due fire through `onTimer`: those at or before the watermark after the batch, or
 * with `end` (the input ended) every one; `allowedLateness` (ms) holds the watermark back as
 * the stage's key does. Returns {outputs, counts, failures}: outputs the batch's then the
 * timers', counts one entry per input.
 */
export function run(app, events, settings = [], { end = true, allowedLateness = 0n } = {}) {
  reset();
  init(app, settings);
  const inputs = events.map((e) => (e instanceof Event ? e : new Event(e)));
  const lateness = BigInt(allowedLateness);
  const held = (m) => (m > lateness ? m - lateness : 0n);
  let mark = 0n;
  const marks = [];
  if (inputs.some((e) => e.timestamp !== null)) {
    for (const e of inputs) {
      marks.push(held(mark));
      if (e.timestamp !== null && e.timestamp > mark) mark = e.timestamp;
    }
  }
  backend.marks = marks;
  const { events: batch, counts, failures } = processBatch(app.process, pack(inputs), app.processBatch ?? null);
  const outputs = unpack(batch);
  backend.marks = [];
  const until = end ? END_OF_TIME : held(mark);
  for (let fired = backend.due(until); fired.length; fired = backend.due(until)) {
    outputs.push(...unpack(timerBatch(app.onTimer, fired)));
  }
  return {
    outputs,
    counts: counts.length ? Array.from(counts) : inputs.map(() => 1),
    failures,
  };
}
