// Launch the system Chromium (Debian's /usr/bin/chromium) headless through playwright-core, which never
// downloads a browser of its own.
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CANDIDATES = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** The browser executable: $CHROMIUM, else the first of the usual Debian/Ubuntu paths that exists. */
export function chromiumPath() {
  const found = CANDIDATES.find((p) => p && existsSync(p));
  if (!found) throw new Error('no Chromium found: apt-get install -y chromium, or set CHROMIUM=/path/to/chrome');
  return found;
}

/**
 * A fresh headless Chromium with its own profile folder (removed on close).
 * @returns {Promise<{context: import('playwright-core').BrowserContext, close: () => Promise<void>}>}
 */
export async function launch({ args = [] } = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), 'edgeret-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath(),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...args],
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Open `url` in a new page, wait for `window.__done` to be set by the page, return `window.__result`.
 * Console output of the page is forwarded (prefixed) when `log` is true.
 */
export async function runPage(context, url, { timeoutMs = 240_000, log = true } = {}) {
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => {
    // the refusal checks request missing files on purpose: the browser's 404 notes are noise
    if (log && !msg.text().startsWith('Failed to load resource')) console.log(`  [page] ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(String(err)));
  try {
    await page.goto(url);
    await page.waitForFunction(() => window.__done === true, null, { timeout: timeoutMs, polling: 200 })
      .catch((err) => { throw new Error(`${url}: ${errors.join('; ') || err.message}`); });
    return await page.evaluate(() => window.__result);
  } finally {
    await page.close();
  }
}
