// Renders Mermaid diagrams with mermaid itself under jsdom, as tests/test_mermaid.py asks.
// Argument: the folder tests/mermaid/install.sh installed mermaid and jsdom into.
// Standard input: a JSON list of diagram texts. Standard output: a JSON list, one
// entry per diagram: {"error": message} when mermaid refuses it, else what a viewer
// sees: the axis' tick labels, each gantt bar's label and classes, each flowchart
// node's label and the number of edges.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const cache = process.argv[2];
const { JSDOM } = createRequire(join(cache, "package.json"))("jsdom");

const dom = new JSDOM("<!DOCTYPE html><html><body></body></html>", { pretendToBeVisual: true });
const w = dom.window;
globalThis.window = w;
globalThis.document = w.document;
for (const name of ["Element", "HTMLElement", "SVGElement", "Node", "DOMParser", "XMLSerializer",
                    "MutationObserver", "CSSStyleSheet", "getComputedStyle"]) {
  globalThis[name] = w[name];
}
Object.defineProperty(globalThis, "navigator", { value: w.navigator, configurable: true });
// jsdom lays nothing out: text gets a size from its length, which is all the
// renderers need to place labels.
w.SVGElement.prototype.getBBox = function () {
  return { x: 0, y: 0, width: 8 * (this.textContent || "").length, height: 16 };
};
w.SVGElement.prototype.getComputedTextLength = function () { return 8 * (this.textContent || "").length; };

// mermaid logs to the console; standard output is for the answer alone.
console.log = console.info = console.warn = console.debug = (...args) => process.stderr.write(args.join(" ") + "\n");

const { default: mermaid } = await import(pathToFileURL(join(cache, "node_modules/mermaid/dist/mermaid.core.mjs")).href);
mermaid.initialize({ startOnLoad: false });

const texts = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const [i, text] of texts.entries()) {
  try {
    const { svg } = await mermaid.render(`d${i}`, text);
    const doc = new w.DOMParser().parseFromString(svg, "text/html")  // labels hold HTML such as <br>;
    const all = (selector) => [...doc.querySelectorAll(selector)];
    results.push({
      ticks: all(".tick text").map((t) => t.textContent),
      tasks: all("rect.task").map((rect) => {
        const id = rect.getAttribute("id");
        const label = doc.getElementById(`${id}-text`);
        return { id, classes: rect.getAttribute("class"), label: label ? label.textContent : null };
      }),
      sections: all("text.sectionTitle").map((t) => t.textContent),
      nodes: all("g.node").map((g) => g.textContent),
      edges: all(".edgePaths path, path.flowchart-link").length,
    });
  } catch (err) {
    results.push({ error: String(err && err.message ? err.message : err) });
  }
}
process.stdout.write(JSON.stringify(results));
