// {{name}}: a weir stage that drops the events whose value contains a word.
//
// An event whose value is empty is rejected (the host dead-letters it with the reason);
// every other event passes through unchanged, or is filtered out when it contains the word.
import { Reject, log, text } from "./weir.js";

export const name = "{{name}}";
export const version = "0.1.0";

export const settings = [
  { name: "drop", type: "text", default: "DEBUG", help: "drop the events whose value contains this" },
  { name: "ignore-case", type: "boolean", default: false, help: "match the word in any case" },
];

let word = "";
let ignoreCase = false;

export function init(settings) {
  ignoreCase = settings["ignore-case"];
  word = ignoreCase ? settings.drop.toLowerCase() : settings.drop;
  log(`dropping events containing ${JSON.stringify(settings.drop)}`, "debug");
}

export function process(event) {
  if (event.value.length === 0) throw new Reject("empty value");
  const value = text(event.value);
  if ((ignoreCase ? value.toLowerCase() : value).includes(word)) return null; // filtered out
  return event; // passed through as it is
}
