// {{name}}: a weir stage that counts events per key in the host's keyed state.
//
// Each event adds one to the counter of its key (of its value, when it has no key) and
// becomes the event `KEY,N`, N the key's count so far, keeping the input's key, headers and
// timestamp. The first event of a key sets an event-time timer at the end of time, which
// fires when the input ends (in a pipeline whose events carry event time): the stage then
// emits `KEY,N,final`, the key's final count. The counts live in the host, not in this
// instance: they survive the instance being replaced, and count each event once.
import { END_OF_TIME, Timer, state, text, time } from "./weir.js";

export const name = "{{name}}";
export const version = "0.1.0";

export function process(event) {
  const key = event.key ?? event.value;
  const count = state.increment(key); // a refused write throws StateError, which rejects the event
  if (count === 1n) time.setTimer(Timer.event(key, END_OF_TIME));
  return `${text(key)},${count}`;
}

export function onTimer(fired) {
  const out = [];
  for (const timer of fired) {
    const count = state.get(timer.key);
    if (count !== null) {
      const n = new DataView(count.buffer, count.byteOffset, 8).getBigInt64(0, true);
      out.push(`${text(timer.key)},${n},final`);
    }
  }
  return out;
}
