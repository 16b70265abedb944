"""weir_window: event-time windows per key, kept in the host's state and closed by
event-time timers, as the Rust SDK's ``weir_plugin::window`` keeps them.

A stage makes a :class:`Windowed` from a kind of windows (:class:`Tumbling`,
:class:`Hopping`, :class:`Session`) and an aggregate, an object with ``init()``,
``add(acc, event) -> acc``, ``merge(acc, other) -> acc``, ``finish(key, window, acc) ->
bytes``, ``encode(acc) -> bytes`` and ``decode(bytes) -> acc``, then hands it its batches
and timers::

    counts = Windowed(Tumbling(60_000), Count())

    def process_batch(events):
        return counts.process_batch(events)

    def on_timer(fired):
        return counts.on_timer(fired)

Data moves like this, the Rust SDK's way, so that both give the same windows and outputs:

1. Each event goes to the windows of its timestamp. Windows are aligned to the Unix epoch (a
   tumbling window of size ``s`` starts at a multiple of ``s``; a hopping window of size
   ``s`` and slide ``d`` at a multiple of ``d``). A session per key spans its events' times
   plus the gap; sessions that come to overlap are merged.
2. A window whose end is at or before the watermark the event saw is closed: an event with no
   open window left fails with a reason starting ``late:`` (the host dead-letters or drops it
   as late). An event without a timestamp is rejected.
3. Accumulators live in host state, one entry per key and window (per key for sessions),
   read and written a batch at a time (``get_many``, ``set_many``). A window's first event
   sets an event-time timer at its end.
4. When the watermark reaches a window's end its timer fires: :meth:`Windowed.on_timer`
   finishes the window into one event (key: the key; value: what ``finish`` returns;
   timestamp: the window's end minus 1 ms) and deletes its state.

State keys: ``w`` + window start (8 bytes, big-endian) + the key for tumbling and hopping
windows; ``s`` + the key for a key's sessions (each: start and end as 8 bytes little-endian,
the accumulator's length as 4, the accumulator).
"""

import struct

from weir import Event, Reject, Timer, state, time

__all__ = ["Hopping", "Session", "Tumbling", "Window", "Windowed", "late"]


def late(reason):
    """The failure of an event that came too late for its windows."""
    return Reject(f"late: {reason}")


class Window:
    """A window: events with ``start <= time < end``."""

    __slots__ = ("start", "end")

    def __init__(self, start, end):
        self.start = start
        self.end = end

    def __eq__(self, other):
        return isinstance(other, Window) and (self.start, self.end) == (other.start, other.end)

    def __repr__(self):
        return f"Window({self.start}, {self.end})"


_MAX = 0xFFFFFFFFFFFFFFFF


def _add(a, b):
    return min(a + b, _MAX)


class Tumbling:
    """Back-to-back windows of ``size`` milliseconds."""

    def __init__(self, size):
        self.size = max(int(size), 1)

    def of(self, t):
        start = t - t % self.size
        return [Window(start, _add(start, self.size))]


class Hopping:
    """Windows of ``size`` milliseconds starting every ``slide``: an event is in
    ``size / slide`` of them."""

    def __init__(self, size, slide):
        self.size = max(int(size), 1)
        self.slide = max(int(slide), 1)

    def of(self, t):
        out = []
        start = t - t % self.slide
        while _add(start, self.size) > t:
            out.append(Window(start, _add(start, self.size)))
            if start < self.slide:
                break
            start -= self.slide
        out.reverse()
        return out


class Session:
    """Per key, events less than ``gap`` milliseconds apart share a window."""

    def __init__(self, gap):
        self.gap = max(int(gap), 1)
        self.size = self.gap

    def of(self, t):
        return [Window(t, _add(t, self.gap))]


def key_and_timestamp(event):
    """The default extract: the event's key (none is the empty key) and its timestamp."""
    if event.timestamp is None:
        raise Reject("the event has no timestamp: windows need event time")
    return (event.key or b""), event.timestamp


def _window_key(start, key):
    return b"w" + struct.pack(">Q", start) + key


def _session_key(key):
    return b"s" + key


class Windowed:
    """Windows over a stage's events, with their aggregate. ``extract(event) -> (key,
    time)`` says where each event's key and time come from (its key and timestamp unless
    given; raising :class:`weir.Reject` fails the event)."""

    def __init__(self, windows, aggregate, extract=key_and_timestamp):
        self.windows = windows
        self.aggregate = aggregate
        self.extract = extract

    def process_batch(self, events):
        """Adds a batch's events to their windows: one outcome per event (None, or the
        failure), no outputs: windows emit when they close."""
        marks = time.watermarks()
        found = []
        for e in events:
            try:
                key, t = self.extract(e)
                found.append((bytes(key), int(t)))
            except Reject as f:
                found.append(f)
        if isinstance(self.windows, Session):
            return self._add_sessions(events, found, marks)
        return self._add_fixed(events, found, marks)

    def _open(self, t, mark):
        every = self.windows.of(t)
        open_ = [w for w in every if w.end > mark]
        if not open_:
            last = every[-1].end if every else t
            raise late(f"its window ended at {last}, at or before the watermark {mark}")
        return open_

    def _add_fixed(self, events, found, marks):
        agg = self.aggregate
        size = self.windows.size
        opened = []
        keys = []
        slot = {}
        for i, kt in enumerate(found):
            mark = marks[i] if i < len(marks) else 0
            if isinstance(kt, Reject):
                opened.append(kt)
                continue
            try:
                windows = self._open(kt[1], mark)
            except Reject as f:
                opened.append(f)
                continue
            for w in windows:
                k = _window_key(w.start, kt[0])
                if k not in slot:
                    slot[k] = len(keys)
                    keys.append(k)
            opened.append(windows)
        stored = state.get_many(keys)
        accs = []
        timers = []
        for k, value in zip(keys, stored):
            if value is not None:
                accs.append(agg.decode(value))
            else:
                accs.append(agg.init())
                start = struct.unpack(">Q", k[1:9])[0]
                timers.append(Timer.event(k[9:], _add(start, size)))
        # A window whose timer the host refused is never written: its events fail.
        refused = {}
        for timer, result in zip(timers, time.set_timers(timers)):
            if result is not None:
                refused[_window_key(timer.at - size, timer.key)] = result
        fates = []
        for event, windows, kt in zip(events, opened, found):
            if isinstance(windows, Reject):
                fates.append(windows)
                continue
            ks = [_window_key(w.start, kt[0]) for w in windows]
            failed = next((refused[k] for k in ks if k in refused), None)
            if failed is not None:
                fates.append(failed)
                continue
            for k in ks:
                accs[slot[k]] = agg.add(accs[slot[k]], event)
            fates.append(None)
        entries = [(k, agg.encode(acc)) for k, acc in zip(keys, accs) if k not in refused]
        over = {e[0]: r for e, r in zip(entries, state.set_many(entries)) if r is not None}
        if over:
            # The events of a window the host refused to write fail with its reason.
            for i, kt in enumerate(found):
                if fates[i] is not None or isinstance(kt, Reject):
                    continue
                for w in self.windows.of(kt[1]):
                    f = over.get(_window_key(w.start, kt[0]))
                    if f is not None:
                        fates[i] = f
                        break
        return fates

    def _add_sessions(self, events, found, marks):
        agg = self.aggregate
        gap = self.windows.gap
        keys = []
        slot = {}
        for kt in found:
            if isinstance(kt, Reject):
                continue
            k = _session_key(kt[0])
            if k not in slot:
                slot[k] = len(keys)
                keys.append(k)
        sessions = [self._decode_sessions(v) for v in state.get_many(keys)]
        ends_before = [[w.end for w, _ in s] for s in sessions]
        fates = []
        for i, (event, kt) in enumerate(zip(events, found)):
            mark = marks[i] if i < len(marks) else 0
            if isinstance(kt, Reject):
                fates.append(kt)
                continue
            key, t = kt
            end = _add(t, gap)
            if end <= mark:
                fates.append(late(f"its session would end at {end}, at or before the watermark {mark}"))
                continue
            open_ = sessions[slot[_session_key(key)]]
            acc = agg.add(agg.init(), event)
            window = Window(t, end)
            j = 0
            while j < len(open_):
                w, other = open_[j]
                if w.start < window.end and window.start < w.end:
                    del open_[j]
                    window = Window(min(window.start, w.start), max(window.end, w.end))
                    acc = agg.merge(acc, other)
                else:
                    j += 1
            open_.append((window, acc))
            fates.append(None)
        entries = []
        timers = []
        for k, open_, before in zip(keys, sessions, ends_before):
            key = k[1:]
            for w, _ in open_:
                if w.end not in before:
                    timers.append(Timer.event(key, w.end))
            for end in before:
                if not any(w.end == end for w, _ in open_):
                    time.cancel_timer(Timer.event(key, end))
            entries.append((k, self._encode_sessions(open_)))
        results = time.set_timers(timers) + state.set_many(entries)
        failed = next((r for r in results if r is not None), None)
        if failed is not None:
            # A session store or timer refused: the batch's events fail with the reason (a
            # refused write wrote nothing; the others may have, and fire on their own).
            fates = [failed if f is None else f for f in fates]
        return fates

    def _decode_sessions(self, data):
        out = []
        rest = data or b""
        while len(rest) >= 20:
            start, end, n = struct.unpack_from("<QQI", rest)
            if len(rest) < 20 + n:
                break
            out.append((Window(start, end), self.aggregate.decode(rest[20 : 20 + n])))
            rest = rest[20 + n :]
        return out

    def _encode_sessions(self, sessions):
        parts = []
        for w, acc in sessions:
            acc = self.aggregate.encode(acc)
            parts.append(struct.pack("<QQI", w.start, w.end, len(acc)) + acc)
        return b"".join(parts)

    def on_timer(self, fired):
        """Closes the windows whose timers fired: one event each, in the order of the
        timers."""
        if isinstance(self.windows, Session):
            return self._close_sessions(fired)
        size = self.windows.size
        keys = [_window_key(max(t.at - size, 0), t.key) for t in fired]
        found = state.get_many(keys)
        state.delete_many(keys)
        out = []
        for timer, value in zip(fired, found):
            if value is None:
                continue
            window = Window(max(timer.at - size, 0), timer.at)
            out.append(self._finished(timer.key, window, self.aggregate.decode(value)))
        return out

    def _close_sessions(self, fired):
        out = []
        for timer in fired:
            k = _session_key(timer.key)
            open_ = self._decode_sessions(state.get(k))
            keep = []
            for w, acc in open_:
                if w.end <= timer.at:
                    out.append(self._finished(timer.key, w, acc))
                else:
                    keep.append((w, acc))
            if keep:
                try:
                    state.set(k, self._encode_sessions(keep))
                except Reject:
                    pass  # as the Rust SDK: the sessions left keep their own timers
            else:
                state.delete(k)
        return out

    def _finished(self, key, window, acc):
        return Event(
            self.aggregate.finish(key, window, acc),
            key=key,
            timestamp=max(window.end - 1, 0),
        )
