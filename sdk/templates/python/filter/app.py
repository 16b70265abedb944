"""{{name}}: a weir stage that drops the events whose value contains a word.

An event whose value is empty is rejected (the host dead-letters it with the reason); every
other event passes through unchanged, or is filtered out when it contains the word.
"""

from weir import Reject, Setting, log

NAME = "{{name}}"
VERSION = "0.1.0"

SETTINGS = [
    Setting("drop", "text", default="DEBUG", help="drop the events whose value contains this"),
    Setting("ignore-case", "boolean", default=False, help="match the word in any case"),
]

_word = b""
_ignore_case = False


def init(settings):
    global _word, _ignore_case
    _ignore_case = settings["ignore-case"]
    _word = settings["drop"].encode()
    if _ignore_case:
        _word = _word.lower()
    log(f"dropping events containing {settings['drop']!r}", "debug")


def process(event):
    value = event.value
    if not value:
        raise Reject("empty value")
    if _word in (value.lower() if _ignore_case else value):
        return None  # filtered out
    return event  # passed through as it is
