"""weir: write a weir stage in Python, one function per event.

A stage is a module (``app.py``) that defines::

    NAME = "my-stage"            # what `describe` reports
    VERSION = "0.1.0"
    SETTINGS = [Setting("prefix", "text", default="", help="put before every value")]

    def init(settings):          # optional; settings is a dict of typed values
        ...

    def process(event):          # required; called once per input event
        return event.value.upper()

``process`` returns what the input event became:

* ``bytes``/``bytearray``/``str``: one event with that value, keeping the input's key,
  headers and timestamp;
* an :class:`Event`: that event (``event`` itself passes the input through);
* a list or tuple of those: several events, in order;
* ``None`` or ``[]``: nothing (the event is filtered out).

Raising :class:`Reject` dead-letters the event with the reason; :class:`Retry` asks the host
to retry it later. Any other exception traps the instance, as a panic does in Rust.

A stage may instead define ``process_batch(events)``, which returns one outcome per event, in
order: what ``process`` would return, or a :class:`Reject`/:class:`Retry` instance.

Under the ``weir:stage@0.3.0`` contract a stage also has the host's keyed state
(:data:`state`: get, set with a TTL, delete, increment, scan, and their batched forms) and
event time (:data:`time`: watermarks, the wall clock, timers), and may define
``on_timer(fired)``, called with the :class:`Timer` objects that fired; it returns events
(or values) that flow on like the outputs of ``process``. A :class:`StateError` the host
raises is a :class:`Reject` whose reason the host recognises (``state-limit: ...``): left
uncaught in ``process``, it fails the event. ``weir_window`` builds event-time windows on
both.

This module is plain Python: it does the packing (events are views into the input batch's
buffer, outputs are appended to one output buffer, and ``counts`` is left empty when every
input became exactly one output) and runs the same under CPython, for tests, as inside the
component, where ``weir_main`` binds it to the contract. Under CPython, state and timers are
kept in memory (:func:`run` starts each run with an empty store) and the watermark is the
highest timestamp seen before each event, as the host works it out for a stage with one
input.
"""

import sys
import time as _clock

__all__ = [
    "Event",
    "Reject",
    "Retry",
    "Setting",
    "StateError",
    "Timer",
    "log",
    "process_batch",
    "run",
    "state",
    "time",
]

NO_KEY = 0xFFFFFFFF
NO_TIMESTAMP = 0xFFFFFFFFFFFFFFFF

_TYPES = ("text", "integer", "float", "boolean")
_LEVELS = ("trace", "debug", "info", "warn", "error")


class Reject(Exception):
    """The event is bad: the host dead-letters it with the reason."""

    def __init__(self, reason=""):
        super().__init__(reason)
        self.reason = str(reason)


class Retry(Exception):
    """A transient failure: the host retries the event later, then dead-letters it."""

    def __init__(self, reason=""):
        super().__init__(reason)
        self.reason = str(reason)


class Setting:
    """A setting the stage accepts: name, type (text, integer, float or boolean), the
    default used when the pipeline does not give it, and one line of help."""

    __slots__ = ("name", "type", "default", "required", "help")

    def __init__(self, name, type="text", default=None, required=False, help=""):
        if type not in _TYPES:
            raise ValueError(f"setting {name!r}: type {type!r} is not one of {_TYPES}")
        self.name = name
        self.type = type
        self.default = None if default is None else _text(default)
        self.required = bool(required)
        self.help = help


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(setting, text):
    if setting.type == "integer":
        return int(text)
    if setting.type == "float":
        return float(text)
    if setting.type == "boolean":
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    return text


def settings_dict(declared, given):
    """The typed settings an ``init`` gets: every declared setting's given value, or its
    default, converted to its type (a setting with neither is left out)."""
    given = dict(given)
    out = {}
    for s in declared:
        text = given.pop(s.name, s.default)
        if text is None:
            if s.required:
                raise ValueError(f"setting `{s.name}` is required")
            continue
        try:
            out[s.name] = _parse(s, text)
        except ValueError as e:
            raise ValueError(f"setting `{s.name}`: {e}") from None
    if given:
        raise ValueError(f"unknown setting `{sorted(given)[0]}`")
    return out


def _log_stderr(level, message):
    print(f"[{level}] {message}", file=sys.__stderr__)


_log_sink = _log_stderr


def log(message, level="info"):
    """Writes a line to the host's log (rate-limited by the host); level is one of
    trace, debug, info, warn, error."""
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {_LEVELS}")
    _log_sink(level, str(message))


class Event:
    """An event: ``value`` (bytes), ``key`` (bytes or None), ``headers`` (list of
    (str, bytes)), ``timestamp`` (ms since the epoch, or None).

    An input event is a view into its batch: only the value is copied out when it is
    made; the key and headers are read from the batch when first asked for, and an event
    whose key and headers were never touched is copied to the output byte for byte.
    """

    __slots__ = ("value", "_key", "_headers", "timestamp", "_src")

    def __init__(self, value=b"", key=None, headers=(), timestamp=None):
        self.value = value
        self._key = key
        self._headers = list(headers)
        self.timestamp = timestamp
        self._src = None

    @classmethod
    def _view(cls, data, headers, fields, timestamp):
        e = cls.__new__(cls)
        vs, vl = fields[0], fields[1]
        e.value = data[vs : vs + vl]
        e.timestamp = timestamp
        e._src = (data, headers, fields)
        return e

    @property
    def key(self):
        src = self._src
        if src is not None:
            self._materialize()
        return self._key

    @key.setter
    def key(self, key):
        if self._src is not None:
            self._materialize()
        self._key = key

    @property
    def headers(self):
        if self._src is not None:
            self._materialize()
        return self._headers

    @headers.setter
    def headers(self, headers):
        if self._src is not None:
            self._materialize()
        self._headers = list(headers)

    def header(self, name):
        """The value of the first header called ``name``, or None."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def _materialize(self):
        data, hd, f = self._src
        self._src = None
        self._key = None if f[3] == NO_KEY else data[f[2] : f[2] + f[3]]
        hs = []
        for h in range(f[4], f[4] + f[5]):
            ns, nl, vs, vl = hd[4 * h : 4 * h + 4]
            hs.append((data[ns : ns + nl].decode(), data[vs : vs + vl]))
        self._headers = hs

    def __repr__(self):
        return (
            f"Event(value={self.value!r}, key={self.key!r}, headers={self.headers!r}, "
            f"timestamp={self.timestamp!r})"
        )

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        return (self.value, self.key, self.headers, self.timestamp) == (
            other.value,
            other.key,
            other.headers,
            other.timestamp,
        )


def _bytes(value):
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value
    raise TypeError(f"an output value must be bytes or str, not {type(value).__name__}")


class _Out:
    """The output batch being built: one buffer and the columns pointing into it."""

    __slots__ = ("data", "events", "headers", "timestamps", "any_ts")

    def __init__(self):
        self.data = bytearray()
        self.events = []
        self.headers = []
        self.timestamps = []
        self.any_ts = False

    def push(self, value, src_data, src_headers, f, key, headers, timestamp):
        """Appends one event. With ``f`` (the input's six numbers) the key and headers are
        copied from the input buffer; otherwise they are ``key`` and ``headers``."""
        data = self.data
        hcol = self.headers
        first = len(hcol) >> 2
        count = 0
        if f is not None:
            kl = f[3]
            if kl == NO_KEY:
                ks = 0
            else:
                ks = len(data)
                data += src_data[f[2] : f[2] + kl]
            for h in range(f[4], f[4] + f[5]):
                ns, nl, hvs, hvl = src_headers[4 * h : 4 * h + 4]
                at = len(data)
                data += src_data[ns : ns + nl]
                data += src_data[hvs : hvs + hvl]
                hcol += (at, nl, at + nl, hvl)
            count = f[5]
        else:
            if key is None:
                ks, kl = 0, NO_KEY
            else:
                key = _bytes(key)
                ks, kl = len(data), len(key)
                data += key
            for name, hv in headers:
                name = name.encode() if isinstance(name, str) else bytes(name)
                hv = _bytes(hv)
                at = len(data)
                data += name
                data += hv
                hcol += (at, len(name), at + len(name), len(hv))
                count += 1
        vs = len(data)
        data += value
        self.events += (vs, len(value), ks, kl, first if count else 0, count)
        if timestamp is None:
            self.timestamps.append(NO_TIMESTAMP)
        else:
            self.timestamps.append(timestamp)
            self.any_ts = True

    def push_any(self, item, src_data, src_headers, f, ts):
        """Appends what ``process`` returned for one input: a value (keeping the input's key,
        headers and timestamp) or an Event."""
        if isinstance(item, Event):
            if item._src is not None:
                _, _, g = item._src
                self.push(_bytes(item.value), src_data, src_headers, g, None, (), item.timestamp)
            else:
                self.push(_bytes(item.value), None, None, None, item._key, item._headers, item.timestamp)
        else:
            self.push(_bytes(item), src_data, src_headers, f, None, (), ts)


def process_batch(process, data, events, headers, timestamps, batch=None):
    """Runs ``process`` on every event of a packed batch (or ``batch`` on all of them, when
    the stage defines ``process_batch``). Returns ``(data, events, headers, timestamps,
    counts, failures)`` for the output, with ``failures`` a list of ``(index, kind, reason)``
    where kind is ``"reject"`` or ``"retry"``."""
    out = _Out()
    counts = []
    failures = []
    one_each = True
    push_any = out.push_any
    view = Event._view
    n = len(events) // 6
    fields = [events[6 * i : 6 * i + 6] for i in range(n)] if batch is not None else None
    if batch is not None:
        views = []
        for i in range(n):
            ts = timestamps[i] if timestamps else NO_TIMESTAMP
            views.append(view(data, headers, fields[i], None if ts == NO_TIMESTAMP else ts))
        outcomes = batch(views)
        if outcomes is None or len(outcomes) != n:
            # The host would report the wrong count for the whole call; say which stage broke
            # the rule instead.
            got = "None" if outcomes is None else len(outcomes)
            raise RuntimeError(f"process_batch returned {got} outcomes for {n} events")
    for i in range(n):
        f = fields[i] if fields is not None else events[6 * i : 6 * i + 6]
        ts = timestamps[i] if timestamps else NO_TIMESTAMP
        ts = None if ts == NO_TIMESTAMP else ts
        if batch is not None:
            result = outcomes[i]
            if isinstance(result, (Reject, Retry)):
                failures.append((i, "reject" if isinstance(result, Reject) else "retry", result.reason))
                counts.append(0)
                one_each = False
                continue
        else:
            try:
                result = process(view(data, headers, f, ts))
            except Reject as e:
                failures.append((i, "reject", e.reason))
                counts.append(0)
                one_each = False
                continue
            except Retry as e:
                failures.append((i, "retry", e.reason))
                counts.append(0)
                one_each = False
                continue
        if result is None:
            count = 0
        elif isinstance(result, (list, tuple)):
            for item in result:
                push_any(item, data, headers, f, ts)
            count = len(result)
        else:
            push_any(result, data, headers, f, ts)
            count = 1
        counts.append(count)
        if count != 1:
            one_each = False
    return (
        out.data,
        out.events,
        out.headers,
        out.timestamps if out.any_ts else [],
        [] if one_each else counts,
        failures,
    )


def timer_batch(on_timer, fired):
    """Runs ``on_timer`` on the timers that fired. Returns ``(data, events, headers,
    timestamps)``: what they became, each value an event of its own (no key, no timestamp)."""
    out = _Out()
    result = on_timer(list(fired)) if on_timer is not None else None
    if result is None:
        result = ()
    elif not isinstance(result, (list, tuple)):
        result = (result,)
    for item in result:
        if isinstance(item, Event):
            if item._src is not None:
                item._materialize()
            out.push(_bytes(item.value), None, None, None, item._key, item._headers, item.timestamp)
        else:
            out.push(_bytes(item), None, None, None, None, (), None)
    return out.data, out.events, out.headers, out.timestamps if out.any_ts else []


# -- keyed state ----------------------------------------------------------------------------


class StateError(Reject):
    """Why the host refused a state operation (nothing was written): ``kind`` is ``"limit"``
    (``text`` names it), ``"not-a-counter"`` or ``"overflow"``.

    It is a :class:`Reject` whose reason the host recognises: raised out of ``process``, it
    fails the event, a limit as ``state-limit: ...`` (the host dead-letters it with the kind
    ``state-limit``), the others as ``state: ...``. The event must have made no write that
    succeeded before the one refused: a failed event's writes still land."""

    def __init__(self, kind, text=""):
        if kind == "limit":
            reason = f"state-limit: {text}"
        elif kind == "not-a-counter":
            reason = "state: the value under the key is not a counter (8 bytes)"
        else:
            reason = "state: the counter would leave the range of a signed 64-bit integer"
        super().__init__(reason)
        self.kind = kind
        self.text = text


# Entries a scan asks the host for per call. The contract allows up to 1,024; a smaller page
# bounds the memory a scan holds at once and the fuel of each host call.
SCAN_PAGE = 256

# The range of a counter: 8 bytes, little-endian, two's complement.
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class _Memory:
    """State and timers in memory, for tests under CPython: the host's semantics (TTLs, the
    8-byte counters, sorted prefix scans, one timer per key, time and clock) without its
    limits, fuel or atomicity. The component replaces it with the host's (``weir_main``)."""

    def __init__(self):
        self.data = {}  # key -> (value, expiry in ms or None)
        self.timers = set()  # (at, clock, key)
        self.marks = []

    def _live(self, key):
        found = self.data.get(key)
        if found is None:
            return None
        value, expiry = found
        if expiry is not None and expiry <= _now_ms():
            del self.data[key]
            return None
        return value

    def get(self, key):
        return self._live(bytes(key))

    def get_many(self, keys):
        return [self._live(bytes(k)) for k in keys]

    def set(self, key, value, ttl_ms):
        expiry = None if ttl_ms is None else _now_ms() + ttl_ms
        self.data[bytes(key)] = (bytes(value), expiry)

    def set_many(self, entries):
        for key, value, ttl_ms in entries:
            self.set(key, value, ttl_ms)
        return [None] * len(entries)

    def delete(self, key):
        self.data.pop(bytes(key), None)

    def delete_many(self, keys):
        for k in keys:
            self.delete(k)

    def increment(self, key, by):
        key = bytes(key)
        value = self._live(key)
        if value is not None and len(value) != 8:
            raise StateError("not-a-counter")
        count = (int.from_bytes(value, "little", signed=True) if value else 0) + by
        if not _I64_MIN <= count <= _I64_MAX:
            raise StateError("overflow")
        expiry = self.data[key][1] if key in self.data else None
        self.data[key] = (count.to_bytes(8, "little", signed=True), expiry)
        return count

    def increment_many(self, counts):
        out = []
        for key, by in counts:
            try:
                out.append(self.increment(key, by))
            except StateError as e:
                out.append(e)
        return out

    def scan(self, prefix, after, limit):
        prefix = bytes(prefix)
        keys = sorted(k for k in self.data if k.startswith(prefix) and (after is None or k > after))
        entries = []
        for k in keys:
            value = self._live(k)
            if value is not None:
                entries.append((k, value))
            if len(entries) == limit:
                break
        more = len(entries) == limit and any(k > entries[-1][0] for k in keys)
        return entries, (entries[-1][0] if more else None)

    def watermarks(self):
        return list(self.marks)

    def now(self):
        return _now_ms()

    def set_timer(self, key, at, clock):
        self.timers.add((at, clock, bytes(key)))

    def set_timers(self, timers):
        for t in timers:
            self.set_timer(t.key, t.at, t.clock)
        return [None] * len(timers)

    def cancel_timer(self, key, at, clock):
        self.timers.discard((at, clock, bytes(key)))

    def due(self, mark, clock="event"):
        """Removes and returns the timers of ``clock`` at or before ``mark``, in time order."""
        fired = sorted(t for t in self.timers if t[1] == clock and t[0] <= mark)
        for t in fired:
            self.timers.discard(t)
        return [Timer(key, at, clock) for at, clock, key in fired]


def _now_ms():
    return _clock.time_ns() // 1_000_000


_backend = _Memory()


def _set_backend(backend):
    global _backend
    _backend = backend


def _ttl(ttl_ms):
    if ttl_ms is None:
        return None
    ttl_ms = int(ttl_ms)
    if ttl_ms < 0:
        raise ValueError(f"a TTL is not negative: {ttl_ms}")
    return ttl_ms


class _State:
    """The stage's keyed state, kept by the host (``weir.state``). Keys and values are bytes
    (a ``str`` is taken as UTF-8); each method is one host call.

    The writes a ``process`` call makes take effect only if the call completes, and a stage
    that fails an event must have made no write for it: check an event before writing for it.
    """

    def get(self, key):
        """The value under ``key``, or None."""
        return _backend.get(_bytes(key))

    def get_many(self, keys):
        """``get`` of each key, in one host call."""
        return _backend.get_many([_bytes(k) for k in keys])

    def set(self, key, value, ttl_ms=None):
        """Writes ``value`` under ``key``, living ``ttl_ms`` milliseconds of processing time
        (for ever without it); raises :class:`StateError` when the host refuses it."""
        _backend.set(_bytes(key), _bytes(value), _ttl(ttl_ms))

    def set_many(self, entries):
        """``set`` of each ``(key, value)`` or ``(key, value, ttl_ms)``, in one host call:
        one result per entry, None or the :class:`StateError` that refused it."""
        packed = []
        for e in entries:
            key, value, ttl_ms = (tuple(e) + (None,))[:3]
            packed.append((_bytes(key), _bytes(value), _ttl(ttl_ms)))
        return _backend.set_many(packed)

    def delete(self, key):
        """Removes ``key``; removing an absent key does nothing."""
        _backend.delete(_bytes(key))

    def delete_many(self, keys):
        """``delete`` of each key, in one host call."""
        _backend.delete_many([_bytes(k) for k in keys])

    def increment(self, key, by=1):
        """Adds ``by`` to the counter under ``key`` (8 bytes, little-endian; absent counts as
        0) and returns the new count; raises :class:`StateError`."""
        return _backend.increment(_bytes(key), int(by))

    def increment_many(self, counts):
        """``increment`` of each ``(key, by)``, in one host call: one result per key, the new
        count or the :class:`StateError` that refused it."""
        return _backend.increment_many([(_bytes(k), int(by)) for k, by in counts])

    def scan_page(self, prefix, after=None, limit=SCAN_PAGE):
        """One page of a prefix scan: ``(entries, next)``, entries ``(key, value)`` by
        increasing key, ``next`` the ``after`` of the next page (None when done)."""
        return _backend.scan(_bytes(prefix), None if after is None else _bytes(after), int(limit))

    def scan(self, prefix=b""):
        """Every ``(key, value)`` whose key starts with ``prefix``, by increasing key, paging
        through the host's cursor."""
        after = None
        while True:
            entries, after = self.scan_page(prefix, after)
            yield from entries
            if after is None:
                return


state = _State()


# -- event time and timers ------------------------------------------------------------------

_CLOCKS = ("event", "processing")


class Timer:
    """A timer: ``key`` (bytes, at most 1 KiB), ``at`` (ms since the Unix epoch) and
    ``clock``: ``"event"`` (fires once the stage's watermark reaches ``at``) or
    ``"processing"`` (once the host's wall clock does)."""

    __slots__ = ("key", "at", "clock")

    def __init__(self, key, at, clock="event"):
        if clock not in _CLOCKS:
            raise ValueError(f"clock {clock!r} is not one of {_CLOCKS}")
        self.key = _bytes(key)
        self.at = int(at)
        self.clock = clock

    @classmethod
    def event(cls, key, at):
        return cls(key, at, "event")

    @classmethod
    def processing(cls, key, at):
        return cls(key, at, "processing")

    def __eq__(self, other):
        if not isinstance(other, Timer):
            return NotImplemented
        return (self.key, self.at, self.clock) == (other.key, other.at, other.clock)

    def __hash__(self):
        return hash((self.key, self.at, self.clock))

    def __repr__(self):
        return f"Timer({self.key!r}, {self.at}, {self.clock!r})"


# The end of time: the watermark once the input has ended, when every event-time timer fires.
END_OF_TIME = 0xFFFFFFFFFFFFFFFF


class _Time:
    """Event time and timers (``weir.time``)."""

    def watermarks(self):
        """The watermark each event of the batch in progress saw, in input order (0 before
        there is one); empty when no input carries event time, and in ``on_timer``."""
        return _backend.watermarks()

    def now(self):
        """The host's wall clock, in milliseconds since the Unix epoch."""
        return _backend.now()

    def set_timer(self, timer):
        """Sets a timer (setting one that is set does nothing); raises :class:`StateError`
        over the stage's state limits."""
        _backend.set_timer(timer.key, timer.at, timer.clock)

    def set_timers(self, timers):
        """Sets each timer, in one host call: one result per timer, None or the
        :class:`StateError` that refused it."""
        return _backend.set_timers(list(timers))

    def cancel_timer(self, timer):
        """Cancels a timer; cancelling one that is not set does nothing."""
        _backend.cancel_timer(timer.key, timer.at, timer.clock)


time = _Time()


# -- running a stage under CPython ----------------------------------------------------------


def pack(events):
    """Packs a list of Events into ``(data, events, headers, timestamps)``: how a test builds
    an input batch."""
    out = _Out()
    for e in events:
        out.push(_bytes(e.value), None, None, None, e.key, e.headers, e.timestamp)
    return bytes(out.data), out.events, out.headers, out.timestamps if out.any_ts else []


def unpack(data, events, headers, timestamps):
    """The Events of a packed batch."""
    out = []
    for i in range(len(events) // 6):
        f = events[6 * i : 6 * i + 6]
        ts = timestamps[i] if timestamps else NO_TIMESTAMP
        e = Event._view(bytes(data), headers, f, None if ts == NO_TIMESTAMP else ts)
        e._materialize()
        out.append(e)
    return out


def reset():
    """Empties the in-memory state and timers."""
    _set_backend(_Memory())


def run(app, events, settings=(), end=True, allowed_lateness=0):
    """Runs a stage module on a list of Events (or values) the way the host does: ``init``
    with ``settings`` (pairs of text) on an empty store, then one packed batch through
    ``process`` (or ``process_batch``), each event seeing as its watermark the highest
    timestamp before it. Then the event-time timers due fire through ``on_timer``: those at or
    before the watermark after the batch, or with ``end`` (the input ended) every one.
    ``allowed_lateness`` (ms) holds the watermark back, as the stage's key does. Returns
    ``(outputs, counts, failures)``: ``outputs`` the batch's outputs then the timers', and
    ``counts`` one entry per input."""
    reset()
    init(app, list(settings))
    events = [e if isinstance(e, Event) else Event(_bytes(e)) for e in events]
    stamps = [e.timestamp for e in events]
    mark, marks = 0, []
    if any(t is not None for t in stamps):
        for t in stamps:
            marks.append(max(mark - allowed_lateness, 0))
            if t is not None:
                mark = max(mark, t)
        mark = max(mark - allowed_lateness, 0)
    _backend.marks = marks
    d, ev, hd, ts, counts, failures = process_batch(
        getattr(app, "process", None), *pack(events), batch=getattr(app, "process_batch", None)
    )
    outputs = unpack(d, ev, hd, ts)
    _backend.marks = []
    fired = _backend.due(END_OF_TIME if end else mark)
    on_timer = getattr(app, "on_timer", None)
    while fired:
        outputs += unpack(*timer_batch(on_timer, fired))
        # A timer that on_timer set at or before the watermark fires at once, as after a
        # batch in the host.
        fired = _backend.due(END_OF_TIME if end else mark)
    return outputs, counts or [1] * len(events), failures


def declared(app):
    """The module's declared settings."""
    return list(getattr(app, "SETTINGS", ()))


def init(app, given):
    """Checks and types ``given`` against the module's declarations and calls its ``init``."""
    typed = settings_dict(declared(app), given)
    hook = getattr(app, "init", None)
    if hook is not None:
        hook(typed)
