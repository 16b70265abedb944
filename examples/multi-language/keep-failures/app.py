"""keep-failures: a weir stage, in Python, that keeps the sshd lines of failed passwords.

A line holding the marker (by default `Failed password for `) passes through unchanged; every
other line is filtered out. An empty line is rejected: the host dead-letters it with the
reason.
"""

from weir import Reject, Setting

NAME = "keep-failures"
VERSION = "0.1.0"

SETTINGS = [
    Setting(
        "marker",
        "text",
        default="Failed password for ",
        help="keep the lines that hold this",
    ),
]

_marker = b""


def init(settings):
    global _marker
    _marker = settings["marker"].encode()


def process(event):
    if not event.value:
        raise Reject("empty line")
    return event if _marker in event.value else None
