"""The component's entry point: binds the stage module ``app`` to ``weir:stage@0.2.0``.

``componentize-py componentize weir_main`` builds the component from this module; the author
never edits it. Everything but the calls into the generated bindings is in ``weir``.
"""

import sys

import app
import weir
from componentize_py_types import Err
from wit_world.imports import log as _wlog
from wit_world.imports import types

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

_NAME = str(getattr(app, "NAME", "python-stage"))
_VERSION = str(getattr(app, "VERSION", "0.1.0"))
_DECLARED = weir.declared(app)
_PROCESS = app.process


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
            _PROCESS, batch.data, batch.events, batch.headers, batch.timestamps
        )
        return types.Output(
            types.Batch(bytes(data), events, headers, timestamps),
            counts,
            [types.Failure(i, _KIND[kind], reason) for i, kind, reason in failures],
        )
