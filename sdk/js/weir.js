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
// This module is plain JavaScript: it does the weir:stage@0.2.0 packing (an input event's
// value is a view into the batch's buffer, never a copy; outputs go into one output buffer;
// `counts` stays empty when every input became exactly one output) and runs the same under
// Node.js, for tests, as inside the component, where weir_main.js binds it to the contract.

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
export function processBatch(process, input) {
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
  for (let i = 0; i < n; i++) {
    const vs = ev[6 * i];
    let t = ts.length ? ts[i] : NO_TIMESTAMP;
    if (t === NO_TIMESTAMP) t = null;
    let result;
    try {
      result = process(Event._view(batch, i, data.subarray(vs, vs + ev[6 * i + 1]), t));
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
 * (pairs of text), then one batch. Returns {outputs, counts, failures}, with counts expanded
 * to one entry per input.
 */
export function run(app, events, settings = []) {
  init(app, settings);
  const inputs = events.map((e) => (e instanceof Event ? e : new Event(e)));
  const { events: batch, counts, failures } = processBatch(app.process, pack(inputs));
  return {
    outputs: unpack(batch),
    counts: counts.length ? Array.from(counts) : inputs.map(() => 1),
    failures,
  };
}
