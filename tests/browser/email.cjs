// Renders an alert email's HTML as a phone (375 px) and a desktop (1280 px) would, in
// headless Chromium: fails when the phone has to scroll sideways, when any element is wider
// than the phone's screen, or when the viewport tag is missing; saves both screenshots.
//
// Usage: node email.cjs <chromium> <page.html> <out dir> [name, default email]
// (also used for the /docs page, which must read on a phone too)
// (NODE_PATH names the node_modules folder that has puppeteer-core.)
const puppeteer = require("puppeteer-core");
const path = require("path");

const [chromium, file, out, name = "email"] = process.argv.slice(2);

function fail(msg) {
  console.error("email render failed: " + msg);
  process.exit(1);
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    // Nothing may be fetched: an email's images and styles are inline or absent.
    await page.setRequestInterception(true);
    page.on("request", (r) => (r.url().startsWith("file:") ? r.continue() : (fail("the email fetched " + r.url()), r.abort())));
    for (const [label, vp] of [
      ["phone", { width: 375, height: 740, isMobile: true, hasTouch: true, deviceScaleFactor: 2 }],
      ["desktop", { width: 1280, height: 800 }],
    ]) {
      await page.setViewport(vp);
      await page.goto("file://" + path.resolve(file), { waitUntil: "load" });
      const html = await page.content();
      if (!html.includes('name="viewport"')) fail("no viewport meta tag");
      const m = await page.evaluate(() => {
        const w = document.documentElement.clientWidth;
        const wide = [...document.querySelectorAll("body *")]
          .filter((e) => e.getBoundingClientRect().right > w + 1)
          .map((e) => e.tagName + ": " + (e.textContent || "").slice(0, 40));
        return { scroll: document.documentElement.scrollWidth, width: w, wide };
      });
      if (m.scroll > m.width) fail(`${label}: the page scrolls sideways (${m.scroll} px in ${m.width} px)`);
      if (m.wide.length) fail(`${label}: wider than the screen: ${m.wide.join("; ")}`);
      const shot = path.join(out, `${name}-${label}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      console.log("screenshot " + shot);
    }
  } finally {
    await browser.close();
  }
})().catch((e) => fail(String(e)));
