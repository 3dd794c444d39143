// Renders a workspace's status page and one account's page in headless Chromium at phone
// (375 px) and desktop (1280 px) width, as served by the daemon, and checks the DOM:
// - every account is listed (as many as expected), those that need a person first, then
//   worst first (unhealthy, warning, unknown, healthy);
// - every bar has 90 cells;
// - the account page has its 90-day band, its incidents, tokens and checks;
// - nothing is fetched from another host, no script runs, the policy blocks nothing the page
//   needs (a violation is an error), and nothing scrolls sideways.
// Saves status-{phone,desktop}.png and status-account-{phone,desktop}.png.
//
// Usage: node status.cjs <chromium> <status page url> <out dir> <expected accounts>
// (NODE_PATH names the node_modules folder that has puppeteer-core.)
const puppeteer = require("puppeteer-core");
const path = require("path");

const [chromium, url, out, expected] = process.argv.slice(2);
const origin = new URL(url).origin;

function fail(msg) {
  console.error("status page check failed: " + msg);
  process.exit(1);
}

const RANK = { unhealthy: 1, warning: 2, unknown: 3, healthy: 4 };

async function sideways(page, label) {
  const m = await page.evaluate(() => {
    const w = document.documentElement.clientWidth;
    return { scroll: document.documentElement.scrollWidth, width: w };
  });
  if (m.scroll > m.width) fail(`${label}: the page scrolls sideways (${m.scroll} px in ${m.width} px)`);
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    const requests = [];
    await page.setRequestInterception(true);
    page.on("request", (r) => {
      requests.push(r.url());
      if (new URL(r.url()).origin !== origin) {
        fail("the page fetched from another host: " + r.url());
      }
      r.continue();
    });
    page.on("console", (m) => {
      if (m.type() === "error") fail("console error: " + m.text());
    });
    page.on("pageerror", (e) => fail("page error: " + e));
    for (const [label, vp] of [
      ["phone", { width: 375, height: 740, isMobile: true, hasTouch: true, deviceScaleFactor: 2 }],
      ["desktop", { width: 1280, height: 800 }],
    ]) {
      await page.setViewport(vp);
      const resp = await page.goto(url, { waitUntil: "load" });
      if (![200, 304].includes(resp.status())) fail(`${label}: the status page answered ${resp.status()}`);
      const dom = await page.evaluate(() => ({
        accounts: [...document.querySelectorAll("li.account")].map((li) => ({
          health: li.dataset.health,
          person: li.dataset.person === "true",
          cells: li.querySelectorAll(".bar > i").length,
          name: li.querySelector(".head a").textContent,
        })),
        scripts: document.querySelectorAll("script").length,
        tiles: document.querySelectorAll(".tile").length,
        people: document.querySelectorAll(".person-card").length,
        visibleCells: [...document.querySelectorAll("li.account:first-child .bar > i")].filter(
          (i) => i.getBoundingClientRect().width > 0,
        ).length,
      }));
      if (dom.accounts.length !== Number(expected))
        fail(`${label}: ${dom.accounts.length} accounts listed, not ${expected}`);
      if (dom.scripts) fail(`${label}: the page has a script`);
      if (dom.tiles < 5) fail(`${label}: ${dom.tiles} count tiles`);
      for (const a of dom.accounts) if (a.cells !== 90) fail(`${label}: ${a.name} has a bar of ${a.cells} cells`);
      const firstOther = dom.accounts.findIndex((a) => !a.person);
      if (firstOther >= 0 && dom.accounts.slice(firstOther).some((a) => a.person))
        fail(`${label}: an account that needs a person comes after one that does not`);
      const ranks = dom.accounts.slice(Math.max(firstOther, 0)).map((a) => RANK[a.health]);
      if (ranks.some((r, i) => i > 0 && r < ranks[i - 1])) fail(`${label}: the accounts are not worst first`);
      if (dom.people !== dom.accounts.filter((a) => a.person).length)
        fail(`${label}: ${dom.people} cards of what to do for ${dom.accounts.filter((a) => a.person).length} accounts`);
      // A phone shows the last 30 days of each bar, a desktop all 90.
      const want = label === "phone" ? 30 : 90;
      if (dom.visibleCells !== want) fail(`${label}: ${dom.visibleCells} cells visible, not ${want}`);
      await sideways(page, label);
      let shot = path.join(out, `status-${label}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      console.log("screenshot " + shot);

      // The first account that needs a person: its own page, by its link.
      const href = await page.evaluate(() => document.querySelector("li.account .head a").href);
      const r2 = await page.goto(href, { waitUntil: "load" });
      if (![200, 304].includes(r2.status())) fail(`${label}: the account page answered ${r2.status()}`);
      const acc = await page.evaluate(() => ({
        band: document.querySelectorAll("svg.band rect").length,
        headings: [...document.querySelectorAll("h2")].map((h) => h.textContent),
        back: document.querySelector('a[href^="../../"]') !== null,
        availability: document.querySelectorAll(".tile").length,
      }));
      if (acc.band < 2) fail(`${label}: the account's band has ${acc.band} rectangles`);
      for (const h of ["Availability", "The last 90 days", "Incidents", "Tokens"])
        if (!acc.headings.includes(h)) fail(`${label}: the account page has no "${h}" (${acc.headings})`);
      if (!acc.headings.some((h) => h.startsWith("Checks of the last day")))
        fail(`${label}: the account page lists no checks`);
      if (!acc.back) fail(`${label}: no link back to the workspace's page`);
      if (acc.availability !== 3) fail(`${label}: ${acc.availability} availability figures, not 3`);
      await sideways(page, label + " account");
      shot = path.join(out, `status-account-${label}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      console.log("screenshot " + shot);
    }
    console.log(`requests: ${requests.length}, all to ${origin}`);
  } finally {
    await browser.close();
  }
})().catch((e) => fail(String(e)));
