// Which of the host's `state` and `time` a stage's JavaScript sources use: build.sh runs it
// (under Node.js) to cut the contract's functions the stage never calls, so that its
// component imports neither, and the host keeps no store for it.
//
//   node weir_uses.mjs DIR        prints the used ones, space-separated: "state time", or ""
//
// It reads the sources, it does not run them: a use is `state` or `time` among the names an
// `import { ... } from "./weir.js"` takes, or `NS.state`/`NS.time` after `import * as NS from
// "./weir.js"`. The layer's own files, the tests (`test_*`) and node_modules are not the
// stage's code.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const LAYER = new Set(["weir.js", "weir_main.js", "weir_bind.js", "weir_uses.mjs"]);
// Folders that hold no stage code: the contract, golden files, dependencies, outputs.
const SKIP = new Set(["wit", "golden", "node_modules", "target"]);
const WEIR = String.raw`["'](?:\./)?weir(?:\.js)?["']`;

function* sources(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (!SKIP.has(name) && !name.startsWith(".")) yield* sources(path);
    } else if (/\.(m?js)$/.test(name) && !LAYER.has(name) && !name.startsWith("test_")) {
      yield path;
    }
  }
}

export function uses(text) {
  const found = new Set();
  for (const m of text.matchAll(new RegExp(String.raw`import\s*\{([^}]*)\}\s*from\s*${WEIR}`, "g"))) {
    for (const spec of m[1].split(",")) {
      const name = spec.trim().split(/\s+as\s+/)[0];
      if (name === "state" || name === "time") found.add(name);
    }
  }
  for (const m of text.matchAll(new RegExp(String.raw`import\s*\*\s*as\s+([A-Za-z_$][\w$]*)\s*from\s*${WEIR}`, "g"))) {
    for (const u of text.matchAll(new RegExp(String.raw`\b${m[1].replace("$", "\\$")}\s*\.\s*(state|time)\b`, "g"))) {
      found.add(u[1]);
    }
  }
  return found;
}

const found = new Set();
for (const path of sources(process.argv[2] ?? ".")) {
  for (const u of uses(readFileSync(path, "utf8"))) found.add(u);
}
console.log([...found].sort().join(" "));
