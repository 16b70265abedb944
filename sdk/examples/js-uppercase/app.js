// js-uppercase: a weir stage that upper-cases the ASCII letters of every value.
//
// Bytes other than a-z (UTF-8 multi-byte sequences included) are left as they are; the key,
// headers and timestamp pass through unchanged. See weir.js for what process may return.
import { asciiUpper, log } from "./weir.js"; // log("text") writes to the host's log

export const name = "js-uppercase";
export const version = "0.1.0";

// Settings the pipeline file may give, e.g.
//   { name: "suffix", type: "text", default: "", help: "appended to every value" }
export const settings = [];

// Called once per instance with the declared settings, typed, defaults applied.
export function init(settings) {}

export function process(event) {
  return asciiUpper(event.value);
}
