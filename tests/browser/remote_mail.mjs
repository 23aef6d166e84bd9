// Drives the system chromium through the portal (run by tests/web_browser.rs):
// screenshots of the DNS check page (ja on a phone, en on a desktop), then
// logs in and deletes the message whose subject is SUBJECT through Remote
// mail. Usage: node remote_mail.mjs URL USER PASS OUTDIR [SUBJECT [CHECK_IP]]
// (CHECK_IP: the phone screenshot checks that address instead of the visitor's).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [url, user, pass, outdir, subject = 'Huge attachment', checkIp] = process.argv.slice(2);
if (!url || !user || !pass || !outdir) {
  console.error('usage: node remote_mail.mjs URL USER PASS OUTDIR [SUBJECT]');
  process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'betomail-chromium-'));
const phone = { width: 390, height: 844 };
const desktop = { width: 1280, height: 860 };

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: desktop,
  locale: 'ja-JP',
});
const shot = (page, name) => page.screenshot({ path: path.join(outdir, name), fullPage: true });
const fail = (msg) => { throw new Error(msg); };

try {
  const page = context.pages()[0] || await context.newPage();

  await page.setViewportSize(phone);
  await page.goto(`${url}/dns-check?lang=ja${checkIp ? `&ip=${encodeURIComponent(checkIp)}` : ''}`);
  (await page.textContent('h1')).includes('DNSチェック') || fail('no Japanese DNS check page');
  await shot(page, 'dns-check-ja-phone.png');

  await page.setViewportSize(desktop);
  await page.goto(`${url}/dns-check?lang=en`);
  (await page.textContent('h1')).includes('DNS check') || fail('no English DNS check page');
  await shot(page, 'dns-check-en-desktop.png');

  await page.goto(`${url}/login`);
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', pass);
  await Promise.all([page.waitForURL(/\/settings$/), page.click('form[action="/login"] button')]);
  await shot(page, 'settings-en-desktop.png');

  await page.goto(`${url}/mail`);
  const row = page.locator('tbody tr', { hasText: subject });
  (await row.count()) === 1 || fail(`expected one message "${subject}" in Remote mail`);
  await row.locator('input[type=checkbox]').check();
  await shot(page, 'remote-mail-en-desktop.png');
  await page.setViewportSize(phone);
  await shot(page, 'remote-mail-en-phone.png');
  await page.setViewportSize(desktop);

  await Promise.all([page.waitForURL(/deleted=1/), page.click('form[action="/mail/delete"] button.danger')]);
  (await page.locator('tbody tr', { hasText: subject }).count()) === 0 || fail('message still listed');
  (await page.locator('.notice.good').count()) === 1 || fail('no confirmation shown');
  await shot(page, 'remote-mail-after-delete.png');
  console.log('deleted');
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
