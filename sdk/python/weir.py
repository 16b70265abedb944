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

This module is plain Python: it does the ``weir:stage@0.2.0`` packing (events are views into
the input batch's buffer, outputs are appended to one output buffer, and ``counts`` is left
empty when every input became exactly one output) and runs the same under CPython, for
tests, as inside the component, where ``weir_main`` binds it to the contract.
"""

import sys

__all__ = ["Event", "Reject", "Retry", "Setting", "log", "process_batch", "run"]

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


def process_batch(process, data, events, headers, timestamps):
    """Runs ``process`` on every event of a packed batch. Returns ``(data, events, headers,
    timestamps, counts, failures)`` for the output, with ``failures`` a list of
    ``(index, kind, reason)`` where kind is ``"reject"`` or ``"retry"``."""
    out = _Out()
    counts = []
    failures = []
    one_each = True
    push_any = out.push_any
    view = Event._view
    n = len(events) // 6
    for i in range(n):
        f = events[6 * i : 6 * i + 6]
        ts = timestamps[i] if timestamps else NO_TIMESTAMP
        ts = None if ts == NO_TIMESTAMP else ts
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


def run(app, events, settings=()):
    """Runs a stage module on a list of Events (or values) the way the host does: ``init``
    with ``settings`` (pairs of text), then one packed batch through ``process``. Returns
    ``(outputs, counts, failures)``, with ``counts`` expanded to one entry per input."""
    init(app, list(settings))
    events = [e if isinstance(e, Event) else Event(_bytes(e)) for e in events]
    d, ev, hd, ts, counts, failures = process_batch(app.process, *pack(events))
    outputs = unpack(d, ev, hd, ts)
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
