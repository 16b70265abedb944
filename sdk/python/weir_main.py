"""The component's entry point: binds the stage module ``app`` to ``weir:stage@0.3.0`` (or
to ``@0.2.0``, for a project whose ``wit/stage.wit`` is that contract).

``componentize-py componentize weir_main`` builds the component from this module; the author
never edits it. Everything but the calls into the generated bindings is in ``weir``.

``build.sh`` cuts the functions of ``state`` and ``time`` out of the contract when the
author's code does not use them, so that the component does not import them and the host
keeps no store for the stage: the bindings then have those interfaces' types only, and a call
that slipped past the cut fails with a message saying so.
"""

import sys

import app
import weir
from componentize_py_types import Err
from wit_world.imports import log as _wlog
from wit_world.imports import types

try:
    from wit_world.imports import state as _wstate
    from wit_world.imports import time as _wtime
except ImportError:  # the 0.2 contract: no state, no time, no on-timer
    _wstate = _wtime = None

_LEVEL = {
    "trace": _wlog.Level.TRACE,
    "debug": _wlog.Level.DEBUG,
    "info": _wlog.Level.INFO,
    "warn": _wlog.Level.WARN,
    "error": _wlog.Level.ERROR,
}
_TYPE = {
    "text": types.SettingType.TEXT,
    "integer": types.SettingType.INTEGER,
    "float": types.SettingType.FLOAT,
    "boolean": types.SettingType.BOOLEAN,
}
_KIND = {"reject": types.FailureKind.REJECT, "retry": types.FailureKind.RETRY}


def _log(level, message):
    _wlog.log(_LEVEL[level], message)


class _LogLines:
    """``print`` goes to the host's log, a line at a time, since the component has no
    stdout of its own."""

    def __init__(self, level):
        self.level = level
        self.pending = ""

    def write(self, text):
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            _log(self.level, line)
        return len(text)

    def flush(self):
        if self.pending:
            _log(self.level, self.pending)
            self.pending = ""


weir._log_sink = _log
sys.stdout = _LogLines("info")
sys.stderr = _LogLines("warn")

def _state_error(e):
    if isinstance(e, _wstate.StateError_Limit):
        return weir.StateError("limit", e.value)
    if isinstance(e, _wstate.StateError_NotACounter):
        return weir.StateError("not-a-counter")
    return weir.StateError("overflow")


def _results(results):
    """A batched call's results: each value, or the StateError that refused it."""
    return [_state_error(r.value) if isinstance(r, Err) else r.value for r in results]


def _cut(what):
    raise RuntimeError(
        f"this component was built without {what}: build.sh found no use of `weir.{what}` "
        "in the stage's sources (see sdk/README.md)"
    )


class _Host:
    """State and timers through the host's imports (weir._Memory's methods, for real)."""

    def get(self, key):
        return _wstate.get(key)

    def get_many(self, keys):
        return _wstate.get_many(keys)

    def set(self, key, value, ttl_ms):
        try:
            _wstate.set(_wstate.Entry(key, value, ttl_ms))
        except Err as e:
            raise _state_error(e.value) from None

    def set_many(self, entries):
        return _results(_wstate.set_many([_wstate.Entry(k, v, t) for k, v, t in entries]))

    def delete(self, key):
        _wstate.delete(key)

    def delete_many(self, keys):
        _wstate.delete_many(keys)

    def increment(self, key, by):
        try:
            return _wstate.increment(key, by)
        except Err as e:
            raise _state_error(e.value) from None

    def increment_many(self, counts):
        return _results(_wstate.increment_many(counts))

    def scan(self, prefix, after, limit):
        page = _wstate.scan(prefix, after, limit)
        return page.entries, page.next

    def watermarks(self):
        return _wtime.watermarks()

    def now(self):
        return _wtime.now()

    def set_timer(self, key, at, clock):
        try:
            _wtime.set_timer(_wtime.Timer(key, at, _CLOCK[clock]))
        except Err as e:
            raise _state_error(e.value) from None

    def set_timers(self, timers):
        return _results(
            _wtime.set_timers([_wtime.Timer(t.key, t.at, _CLOCK[t.clock]) for t in timers])
        )

    def cancel_timer(self, key, at, clock):
        _wtime.cancel_timer(_wtime.Timer(key, at, _CLOCK[clock]))


class _Without:
    """What a component built without state or time calls instead: a clear failure."""

    def __init__(self, host, has_state, has_time):
        self.host = host
        self.has_state = has_state
        self.has_time = has_time

    def __getattr__(self, name):
        timing = name in ("watermarks", "now", "set_timer", "set_timers", "cancel_timer")
        if (self.has_time if timing else self.has_state):
            return getattr(self.host, name)
        return lambda *a: _cut("time" if timing else "state")


if _wstate is not None:
    _CLOCK = {"event": _wtime.Clock.EVENT, "processing": _wtime.Clock.PROCESSING}
    _CLOCK_NAME = {v: k for k, v in _CLOCK.items()}
    has_state, has_time = hasattr(_wstate, "get"), hasattr(_wtime, "watermarks")
    host = _Host()
    weir._set_backend(host if has_state and has_time else _Without(host, has_state, has_time))
else:
    weir._set_backend(_Without(None, False, False))

_NAME = str(getattr(app, "NAME", "python-stage"))
_VERSION = str(getattr(app, "VERSION", "0.1.0"))
_DECLARED = weir.declared(app)
_PROCESS = getattr(app, "process", None)
_BATCH = getattr(app, "process_batch", None)
_ON_TIMER = getattr(app, "on_timer", None)


class WitWorld:
    def describe(self) -> types.Description:
        return types.Description(
            _NAME,
            _VERSION,
            [
                types.Setting(s.name, _TYPE[s.type], s.required, s.default, s.help)
                for s in _DECLARED
            ],
        )

    def init(self, settings) -> None:
        try:
            weir.init(app, settings)
        except Exception as e:  # an init that fails is reported, not a trap
            raise Err(str(e) or type(e).__name__)

    def process(self, batch: types.Batch) -> types.Output:
        data, events, headers, timestamps, counts, failures = weir.process_batch(
            _PROCESS, batch.data, batch.events, batch.headers, batch.timestamps, _BATCH
        )
        return types.Output(
            types.Batch(bytes(data), events, headers, timestamps),
            counts,
            [types.Failure(i, _KIND[kind], reason) for i, kind, reason in failures],
        )

    # A stage that defines no on_timer sets no timer, and is never called.
    def on_timer(self, fired) -> types.Batch:
        timers = [weir.Timer(t.key, t.at, _CLOCK_NAME[t.clock]) for t in fired]
        data, events, headers, timestamps = weir.timer_batch(_ON_TIMER, timers)
        return types.Batch(bytes(data), events, headers, timestamps)
