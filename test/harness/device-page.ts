/**
 * The browser side of the device flow (RFC 8628 §3.3) over real HTTP: the verification page, the
 * sign-in form and the approval form, as a person's browser posts them.
 */
import assert from 'node:assert/strict';
import { request } from 'undici';

/** What POST /v1/auth/device answers (the fields the page needs). */
export interface DeviceStart {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

/** The browser side: a form POST (application/x-www-form-urlencoded) returning the HTML page. */
export async function postForm(baseUrl: string, path: string, fields: Record<string, string>): Promise<{ status: number; html: string }> {
  const res = await request(new URL(path, baseUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  const html = await res.body.text();
  assert.match(String(res.headers['content-type']), /^text\/html/);
  return { status: res.statusCode, html };
}

/** Opens the verification page, signs in, and returns the approval ticket from the confirmation page. */
export async function signInOnDevicePage(baseUrl: string, dev: Pick<DeviceStart, 'user_code' | 'verification_uri_complete'>, username: string, password: string): Promise<string> {
  const page = await request(dev.verification_uri_complete.replace(/^https?:\/\/[^/]+/, baseUrl));
  const pageHtml = await page.body.text();
  assert.equal(page.statusCode, 200);
  assert.equal(page.headers['x-frame-options'], 'DENY');
  // The complete URI pre-fills the code in the sign-in form.
  assert.ok(pageHtml.includes(`name="user_code" value="${dev.user_code}"`), pageHtml);

  const confirm = await postForm(baseUrl, '/device', { user_code: dev.user_code, username, password });
  assert.equal(confirm.status, 200, confirm.html);
  assert.ok(confirm.html.includes(dev.user_code), 'the confirmation page shows the code to compare');
  const m = /<input type="hidden" name="ticket" value="([A-Za-z0-9_.-]+)"/.exec(confirm.html);
  assert.ok(m, `no ticket in:\n${confirm.html}`);
  return m[1]!;
}

/** Signs in on the page and approves: what a person does after `tunnel login` (or any device-flow client) shows a code. */
export async function approveOnDevicePage(baseUrl: string, dev: Pick<DeviceStart, 'user_code' | 'verification_uri_complete'>, username: string, password: string): Promise<void> {
  const ticket = await signInOnDevicePage(baseUrl, dev, username, password);
  const decided = await postForm(baseUrl, '/device/decision', { ticket, decision: 'approve' });
  assert.equal(decided.status, 200, decided.html);
  assert.match(decided.html, /Device approved/);
}
