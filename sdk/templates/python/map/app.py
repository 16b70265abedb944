"""{{name}}: a weir stage that upper-cases the ASCII letters of every value.

Bytes other than a-z (UTF-8 multi-byte sequences included) are left as they are; the key,
headers and timestamp pass through unchanged. See weir.py for what process may return.
"""

from weir import Setting, log  # noqa: F401  (log("text") writes to the host's log)

NAME = "{{name}}"
VERSION = "0.1.0"

# Settings the pipeline file may give, e.g.
#   Setting("suffix", "text", default="", help="appended to every value")
SETTINGS = []


def init(settings):
    """Called once per instance with the declared settings, typed, defaults applied."""


def process(event):
    # bytes.upper() changes only the ASCII letters.
    return event.value.upper()
