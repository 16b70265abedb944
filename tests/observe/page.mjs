// Loads weir's live page in headless Chromium, waits until every node of the graph shows a
// rate above zero, saves a screenshot and prints the nodes the DOM holds as JSON.
// Environment: WEIR_PAGE_URL, CHROMIUM (the browser's path), SCREENSHOT (a .png path).
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  // As root, without a sandbox; without background networking, which this machine's closed
  // network refuses.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1150, height: 420 } });
  await page.goto(process.env.WEIR_PAGE_URL);
  await page.waitForFunction(() => {
    const nodes = [...document.querySelectorAll("g.node")];
    return nodes.length > 0 && nodes.every((g) => parseFloat(g.dataset.rate) > 0);
  }, null, { timeout: 30000 });
  const nodes = await page.$$eval("g.node", (gs) => gs.map((g) => ({
    node: g.dataset.node, kind: g.dataset.kind, rate: g.dataset.rate, text: g.textContent,
  })));
  await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  console.log(JSON.stringify(nodes));
} finally {
  await browser.close();
}
