// Drives headless Chromium through the demo's connect links, as a person would: the X link
// to the simulated consent, Allow, and socialsyncer's success page; the Facebook link to the
// consent, Allow, socialsyncer's Page chooser (one Page unticked), Connect selected, and the
// success page. Saves screenshots at desktop and phone width, and fails on any console
// error (a Content-Security-Policy refusal shows there) or on script in socialsyncer's pages.
//
// Usage: node connect.cjs <chromium> <x link> <facebook link> <public url> <out dir>
// (NODE_PATH names the node_modules folder that has puppeteer-core.)
const puppeteer = require("puppeteer-core");
const path = require("path");

const [chromium, xLink, fbLink, publicUrl, out] = process.argv.slice(2);
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 740, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

function fail(msg) {
  console.error("browser test failed: " + msg);
  process.exit(1);
}

async function shoot(page, name) {
  for (const [label, vp] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewport(vp);
    const file = path.join(out, `${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log("screenshot " + file);
  }
  await page.setViewport(DESKTOP);
}

// socialsyncer's own pages: no script at all, the policy header, the viewport tag.
async function ours(page, response) {
  const html = await page.content();
  if (/<script/i.test(html)) fail("a socialsyncer page has a script: " + page.url());
  const csp = response && response.headers()["content-security-policy"];
  if (!csp || !csp.includes("default-src 'none'")) fail("no strict CSP on " + page.url() + ": " + csp);
  if (!html.includes('name="viewport"')) fail("no viewport meta tag on " + page.url());
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const errors = [];
  try {
    const page = await browser.newPage();
    await page.setJavaScriptEnabled(false);
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("response", (r) => {
      if (r.status() >= 400) errors.push(r.status() + " " + r.url());
    });
    await page.setViewport(DESKTOP);

    // X: link -> consent -> Allow -> callback -> /connect/done.
    await page.goto(xLink, { waitUntil: "load" });
    if (!(await page.$("button[value=allow]"))) fail("no consent form at " + page.url());
    let [resp] = await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button[value=allow]")]);
    if (!page.url().startsWith(publicUrl + "/connect/done?status=connected&platform=twitter")) fail("X ended at " + page.url());
    await ours(page, resp);
    if (!(await page.content()).includes("Connected")) fail("no success page after X");
    await shoot(page, "connect-done");

    // Facebook: link -> consent -> Allow -> socialsyncer's chooser -> untick one -> done.
    await page.goto(fbLink, { waitUntil: "load" });
    [resp] = await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button[value=allow]")]);
    if (!/\/connect\/[^/]+\/choose$/.test(page.url())) fail("Facebook ended at " + page.url());
    await ours(page, resp);
    const offered = (await page.$$("input[type=checkbox][name=account]")).length;
    if (offered !== 2) fail("the chooser offers " + offered + " Pages, not 2");
    await shoot(page, "connect-chooser");
    // (A phone viewport reloads the page, which shows the same choice again.)
    await page.click("input[type=checkbox][name=account]");
    [resp] = await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button[value=connect]")]);
    const end = page.url();
    if (!end.startsWith(publicUrl + "/connect/done?status=connected&platform=facebook&accountId=")) fail("the chooser ended at " + end);
    if ((end.match(/accountId=/g) || []).length !== 1) fail("one Page was chosen, the redirect says " + end);
    await ours(page, resp);
    if (errors.length) fail("console errors: " + errors.join(" | "));
    console.log("ok: " + end);
  } finally {
    await browser.close();
  }
})().catch((e) => fail(String(e && e.stack || e)));
