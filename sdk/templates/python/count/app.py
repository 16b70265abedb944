"""{{name}}: a weir stage that counts events per key in the host's keyed state.

Each event adds one to the counter of its key (of its value, when it has no key) and becomes
the event ``KEY,N``, N the key's count so far, keeping the input's key, headers and
timestamp. The first event of a key sets an event-time timer at the end of time, which fires
when the input ends (in a pipeline whose events carry event time): the stage then emits
``KEY,N,final``, the key's final count. The counts live in the host, not in this instance:
they survive the instance being replaced, and count each event once.
"""

from weir import END_OF_TIME, Timer, state, time

NAME = "{{name}}"
VERSION = "0.1.0"


def process(event):
    key = event.key if event.key is not None else event.value
    count = state.increment(key)  # a refused write raises StateError, which rejects the event
    if count == 1:
        time.set_timer(Timer.event(key, END_OF_TIME))
    return b"%s,%d" % (key, count)


def on_timer(fired):
    out = []
    for timer in fired:
        count = state.get(timer.key)
        if count is not None:
            out.append(b"%s,%d,final" % (timer.key, int.from_bytes(count, "little", signed=True)))
    return out
