// user-and-address: a weir stage, in JavaScript, that turns an sshd failed-password line into
// the user it tried and the address it came from.
//
// `... Failed password for invalid user admin from 1.2.3.4 port 22 ssh2` becomes the JSON
// `{"user":"admin","address":"1.2.3.4"}`, keyed by the address (so that a later stage can
// count per address), with the input's headers and timestamp. A line without both is rejected:
// the host dead-letters it with the reason.
import { Event, Reject } from "./weir.js";

export const name = "user-and-address";
export const version = "0.1.0";
export const settings = [];

export function init(settings) {}

const text = new TextDecoder();
const LINE = /Failed password for (?:invalid user )?(\S*) from (\S+) port /;

export function process(event) {
  const found = LINE.exec(text.decode(event.value));
  if (!found) throw new Reject("no user and address in the line");
  const [, user, address] = found;
  return new Event(JSON.stringify({ user, address }), {
    key: address,
    headers: event.headers,
    timestamp: event.timestamp,
  });
}
