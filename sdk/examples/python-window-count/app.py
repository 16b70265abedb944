"""python-window-count: counts events per key in event-time windows, as the Rust
``plugins/window-count`` does, through ``weir_window``.

Each event goes to the windows of its timestamp (by its key; no key is the empty key); when
the watermark passes a window's end, the stage emits
``{"window_start":MS,"key":"KEY","count":N}`` for each key seen in it. The counts live in the
host's state. Settings: ``window`` (``tumbling``, ``hopping`` or ``session``), ``size_ms``,
``slide_ms`` (hopping; 0 is the size) and ``gap_ms`` (session).
"""

from weir import Setting
from weir_window import Hopping, Session, Tumbling, Windowed

NAME = "python-window-count"
VERSION = "0.1.0"

SETTINGS = [
    Setting("window", "text", default="tumbling", help="tumbling, hopping or session"),
    Setting("size_ms", "integer", default=60000, help="the window's length (tumbling, hopping), in milliseconds"),
    Setting("slide_ms", "integer", default=0, help="how far apart hopping windows start (0: the size)"),
    Setting("gap_ms", "integer", default=60000, help="the quiet time that ends a session, in milliseconds"),
]


class Count:
    """A count, as 8 little-endian bytes in the host's state."""

    def init(self):
        return 0

    def add(self, acc, event):
        return acc + 1

    def merge(self, acc, other):
        return acc + other

    def finish(self, key, window, acc):
        return b'{"window_start":%d,"key":"%s","count":%d}' % (window.start, json_text(key), acc)

    def encode(self, acc):
        return acc.to_bytes(8, "little")

    def decode(self, data):
        return int.from_bytes(data, "little") if len(data) == 8 else 0


def json_text(text):
    """``text`` as the inside of a JSON string (bytes that are not UTF-8 are replaced)."""
    out = []
    for c in text.decode("utf-8", "replace"):
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif ord(c) < 0x20:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    return "".join(out).encode()


_windowed = None


def init(settings):
    global _windowed
    for name in ("size_ms", "slide_ms", "gap_ms"):
        if settings[name] < 0:
            raise ValueError(f"{name} must not be negative")
    size = max(settings["size_ms"], 1)
    kind = settings["window"]
    if kind == "tumbling":
        windows = Tumbling(size)
    elif kind == "hopping":
        windows = Hopping(size, settings["slide_ms"] or size)
    elif kind == "session":
        windows = Session(max(settings["gap_ms"], 1))
    else:
        raise ValueError(f"unknown window {kind!r}: use tumbling, hopping or session")
    _windowed = Windowed(windows, Count())


def process_batch(events):
    return _windowed.process_batch(events)


def on_timer(fired):
    return _windowed.on_timer(fired)
