#!/usr/bin/env node
// sandbox.spec.js — the /sandbox page as a person sees it, in Debian's headless Chromium driven
// by playwright-core (as docs.spec.js).
//
//   node tests/browser/sandbox.spec.js BASE_URL OUTDIR CHAT_ID OTP MARKUP_CHAT_ID
//   node tests/browser/sandbox.spec.js --api-key KEY BASE_URL OUTDIR CHAT_ID OTP
//
// Against a gateway in sandbox mode at BASE_URL (tests/integration/test_sandbox_page.py starts
// one with the Bot API emulator). With the keyboard only: reaches the form, sends a bad code
// (the 422 is shown), then CHAT_ID and OTP with expire_seconds 5, sees the answer's JSON, the bubble with the code and a countdown,
// copies the code with Enter, and waits until the page shows the message deleted. Then checks
// the markup of MARKUP_CHAT_ID's message (sent straight to the emulator by the test): bold, a
// line break, text that looks like HTML shown as text, a javascript: link dropped. Then dark
// mode and a phone-sized screen. With --api-key, checks the key field instead: shown, a send
// without the key answered 401, with it 200.
// Screenshots go to OUTDIR (sandbox-before.png, sandbox-after.png, sandbox-dark.png,
// sandbox-narrow.png, sandbox-markup.png; sandbox-empty.png, sandbox-api-key.png; failure.png
// when a step fails).
// The last line is "# result {JSON}" with what the Python side checks against the emulator.
'use strict';

const fs = require('fs');
const path = require('path');

const WWW_MODULES = path.resolve(__dirname, '../../www/node_modules');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
	'--no-first-run', '--disable-background-networking', '--disable-component-update',
	'--disable-sync'];
const TIMEOUT_MS = 20000;
const EXPIRE_SECONDS = 5;

function usage() {
	console.error('usage: node sandbox.spec.js [--api-key KEY] BASE_URL OUTDIR CHAT_ID OTP [MARKUP_CHAT_ID]');
	process.exit(2);
}

function step(what) {
	console.log(`ok - ${what}`);
}

function check(cond, what) {
	if (!cond)
		throw new Error(what);
}

// Presses Tab until the element matching selector has the focus: what a keyboard user does.
async function tabTo(page, selector, maxPresses) {
	for (let i = 0; i < maxPresses; i++) {
		await page.keyboard.press('Tab');
		if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector))
			return i + 1;
	}
	throw new Error(`${selector} not reached with ${maxPresses} presses of Tab`);
}

// No focus ring in a screenshot.
async function blur(page) {
	await page.evaluate(() => document.activeElement && document.activeElement.blur());
}

async function typeInto(page, text) {
	await page.keyboard.press('Control+A');
	await page.keyboard.type(text);
}

async function answerShown(page, status) {
	const box = page.locator('#answer');
	await box.locator('.http-status', { hasText: String(status) }).waitFor();
	return JSON.parse(await box.locator('#answer-json').innerText());
}

async function noHorizontalScroll(page) {
	return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
}

async function sendAndWatch(page, origin, outdir, chatId, otp, result) {
	// keyboard only: from the top of the page to the form, then Enter submits it
	await blur(page);
	await tabTo(page, '#chat-id', 8);
	await typeInto(page, chatId);
	await page.keyboard.press('Tab');
	check(await page.evaluate(() => document.activeElement.id) === 'otp', 'Tab from chat_id goes to otp');
	await typeInto(page, otp.slice(0, 2) + 'ab');
	await tabTo(page, '#expire', 3);
	await typeInto(page, String(EXPIRE_SECONDS));
	await page.keyboard.press('Enter');
	// a bad code first: the gateway's 422 is shown as it came
	const refused = await answerShown(page, 422);
	check(refused.detail[0].loc.join('.') === 'body.otp' &&
	      refused.detail[0].msg === 'Value error, otp must contain only digits',
	      `422 answer: ${JSON.stringify(refused)}`);
	step(`a bad code: 422 ${JSON.stringify(refused)}`);
	await page.keyboard.press('Shift+Tab');
	await page.keyboard.press('Shift+Tab');
	check(await page.evaluate(() => document.activeElement.id) === 'otp', 'Shift+Tab back to otp');
	await typeInto(page, otp);
	await page.keyboard.press('Enter');
	const answer = await answerShown(page, 200);
	check(answer.success === true && answer.chat_id === chatId && answer.message_id > 0,
	      `unexpected answer: ${JSON.stringify(answer)}`);
	result.answer = answer;
	step(`the form sent the OTP with the keyboard alone: 200, message_id ${answer.message_id}`);

	const msg = page.locator(`li.msg[data-chat-id="${chatId}"][data-message-id="${answer.message_id}"]`);
	await msg.waitFor();
	const code = msg.locator('.bubble .text code');
	check(await code.innerText() === otp, `the bubble's <code> is ${await code.innerText()}`);
	check(await msg.locator('.bubble .protected').count() === 1, 'protect_content is marked');
	await msg.locator('.left', { hasText: /self-destructs in \d/ }).waitFor();
	const deleteAtMs = Number(await msg.getAttribute('data-delete-at-ms'));
	check(deleteAtMs > 0, 'the bubble knows delete_at');
	result.delete_at_ms = deleteAtMs;
	const sentShown = await msg.locator('.meta time.sent').innerText();
	check(/^\d\d:\d\d:\d\d$/.test(sentShown), `time sent shown as ${sentShown}`);
	step(`the bubble shows the code as <code>, the protect_content mark, sent ${sentShown} and a countdown`);
	await blur(page);
	await page.screenshot({ path: path.join(outdir, 'sandbox-before.png') });

	// tap-to-copy, by keyboard: Tab to the code, Enter
	await tabTo(page, `li.msg[data-message-id="${answer.message_id}"] code`, 12);
	await page.keyboard.press('Enter');
	await page.locator('#toast', { hasText: `Copied ${otp}` }).waitFor();
	const copied = await page.evaluate(() => navigator.clipboard.readText());
	check(copied === otp, `the clipboard holds ${JSON.stringify(copied)}`);
	step('Enter on the code copies it to the clipboard');

	await msg.locator('.timer').waitFor({ state: 'visible' });
	await page.locator(`li.msg[data-message-id="${answer.message_id}"][data-state="deleted"]`)
		.waitFor({ timeout: (EXPIRE_SECONDS + 10) * 1000 });
	result.deleted_at_ms = Number(await msg.getAttribute('data-deleted-at-ms'));
	result.seen_deleted_ms = Number(await msg.getAttribute('data-seen-deleted-ms'));
	const trace = (await msg.locator('.trace').innerText()).replace(/\s+/g, ' ').trim();
	result.trace = trace;
	check(/^Deleted at \d\d:\d\d:\d\d\.\d{3} [\d.]+ m?s (after|before) delete_at (on time|late|early)$/.test(trace),
	      `the trace reads ${trace}`);
	check(!(await msg.innerText()).includes(otp), 'the code left the page with the message');
	check(await msg.locator('.bubble').isHidden(), 'the bubble is gone');
	step(`the page shows the deletion: "${trace}"`);
	await page.screenshot({ path: path.join(outdir, 'sandbox-after.png') });
	return answer;
}

async function checkMarkup(page, outdir, markupChat, result) {
	await page.locator(`.chat-item[data-chat-id="${markupChat}"]`).click();
	const msg = page.locator(`li.msg[data-chat-id="${markupChat}"]`).first();
	await msg.waitFor();
	const text = msg.locator('.bubble .text');
	check(await text.locator('strong').innerText() === 'bold', 'bold is <strong>');
	check(await text.locator('em').innerText() === 'italic', 'italic is <em>');
	check(await text.locator('code').innerText() === '1234', 'code is <code>');
	check((await text.innerText()).includes('<img src=x onerror="window.pwned=1">'),
	      'text that looks like HTML is shown as text');
	check(await text.locator('img, script').count() === 0, 'no element came from the message text');
	check(await text.locator('a').count() === 1 && await text.locator('a').getAttribute('href') === 'https://example.org/',
	      'an https link is kept, the javascript: one is not');
	check(await page.evaluate(() => window.pwned === undefined), 'nothing ran');
	check(await text.evaluate((e) => getComputedStyle(e).whiteSpace) === 'pre-wrap' &&
	      (await text.innerText()).includes('\n'), 'line breaks are kept');
	const lines = await text.evaluate((e) => Math.round(e.getBoundingClientRect().height /
		parseFloat(getComputedStyle(e).lineHeight)));
	check(lines >= 2, `the text spans ${lines} line(s)`);
	// a spoiler is hidden until activated (by keyboard here)
	const spoiler = text.locator('.spoiler');
	check(await spoiler.evaluate((e) => getComputedStyle(e).color) !==
	      await text.evaluate((e) => getComputedStyle(e).color), 'the spoiler is hidden');
	await spoiler.focus();
	await page.keyboard.press('Enter');
	check(await spoiler.evaluate((e) => e.classList.contains('revealed')), 'Enter reveals the spoiler');
	result.markup = await text.innerText();
	step('markup: bold, italic, code, line breaks, a spoiler; HTML-looking text stays text; javascript: link dropped');
	await blur(page);
	await page.screenshot({ path: path.join(outdir, 'sandbox-markup.png') });
}

async function apiKeyFlow(page, outdir, key, chatId, otp, result) {
	const field = page.locator('#api-key');
	await field.waitFor({ state: 'visible' });
	step('the API key field is shown (API_KEY is set)');
	check(await page.locator('#empty').isVisible(), 'no chat yet: the page says how to send one');
	await page.screenshot({ path: path.join(outdir, 'sandbox-empty.png') });
	await page.locator('#chat-id').fill(chatId);
	await page.locator('#otp').fill(otp);
	await page.locator('#expire').fill(String(EXPIRE_SECONDS));
	await page.locator('#send').click();
	const refused = await answerShown(page, 401);
	check(/API key/.test(refused.detail), `401 detail: ${JSON.stringify(refused)}`);
	step(`without the key: 401 ${JSON.stringify(refused)}`);
	await field.fill(key);
	await page.locator('#otp').fill(otp);
	await page.locator('#send').click();
	const answer = await answerShown(page, 200);
	check(answer.success === true, `with the key: ${JSON.stringify(answer)}`);
	result.answer = answer;
	await page.locator(`li.msg[data-message-id="${answer.message_id}"] code`, { hasText: otp }).waitFor();
	step(`with the key: 200, message_id ${answer.message_id}, in the chat`);
	await page.screenshot({ path: path.join(outdir, 'sandbox-api-key.png') });
}

async function main() {
	const args = process.argv.slice(2);
	let apiKey = null;
	if (args[0] === '--api-key') {
		apiKey = args[1];
		args.splice(0, 2);
	}
	const [base, outdir, chatId, otp, markupChat] = args;
	if (!base || !outdir || !chatId || !otp || (apiKey === null && !markupChat))
		usage();
	let chromium;
	try {
		({ chromium } = require(path.join(WWW_MODULES, 'playwright-core')));
	} catch (e) {
		console.error(`playwright-core not installed: run www/build-assets.sh (${e.message})`);
		process.exit(3);
	}
	fs.mkdirSync(outdir, { recursive: true });
	const origin = new URL(base).origin;
	const foreign = [];
	const pageErrors = [];
	const consoleErrors = [];
	const result = {};
	// Chromium logs every non-2xx fetch as an error: the 401 and 422 the spec asks for are expected
	const expected = /the server responded with a status of (401|422)/;

	const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
						args: CHROMIUM_ARGS });
	let page;
	try {
		const context = await browser.newContext({ viewport: { width: 1280, height: 820 },
							   colorScheme: 'light' });
		await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
		await context.route('**/*', (route) => {
			const url = route.request().url();
			if (url.startsWith(origin + '/') || url.startsWith('data:'))
				return route.continue();
			foreign.push(url);
			return route.abort();
		});
		const watch = (p) => {
			p.setDefaultTimeout(TIMEOUT_MS);
			p.on('pageerror', (err) => pageErrors.push(String(err)));
			p.on('console', (msg) => {
				if (msg.type() === 'error' && !expected.test(msg.text()))
					consoleErrors.push(`${p.url()}: ${msg.text()}`);
			});
		};
		page = await context.newPage();
		watch(page);

		const res = await page.goto(`${origin}/sandbox`);
		check(res.status() === 200, `/sandbox answered ${res.status()}`);
		await page.locator('#status[data-state="live"]').waitFor();
		step('/sandbox is up and polling the emulator');

		if (apiKey !== null) {
			await apiKeyFlow(page, outdir, apiKey, chatId, otp, result);
		} else {
			await sendAndWatch(page, origin, outdir, chatId, otp, result);
			await checkMarkup(page, outdir, markupChat, result);

			// dark mode, back on the first chat
			await page.emulateMedia({ colorScheme: 'dark' });
			await page.locator(`.chat-item[data-chat-id="${chatId}"]`).click();
			await blur(page);
			const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
			check(bg !== 'rgb(241, 242, 244)', 'dark mode changes the colours');
			await page.screenshot({ path: path.join(outdir, 'sandbox-dark.png') });
			step('dark mode');

			// a phone: one column, nothing wider than the screen
			const phone = await context.newPage();
			watch(phone);
			await phone.setViewportSize({ width: 390, height: 844 });
			await phone.goto(`${origin}/sandbox`);
			await phone.locator('#status[data-state="live"]').waitFor();
			await phone.locator(`.chat-item[data-chat-id="${chatId}"]`).click();
			await phone.locator(`li.msg[data-chat-id="${chatId}"][data-state="deleted"]`).first().waitFor();
			await blur(phone);
			check(await noHorizontalScroll(phone), 'the page is wider than a 390 px screen');
			await phone.screenshot({ path: path.join(outdir, 'sandbox-narrow.png'), fullPage: true });
			// the chat is below the form there: a send brings its bubble into view
			const other = chatId + '1';
			await phone.locator('#chat-id').fill(other);
			await phone.locator('#expire').fill('60');
			await phone.locator('#send').click();
			const sent = await answerShown(phone, 200);
			const bubble = phone.locator(`li.msg[data-chat-id="${other}"][data-message-id="${sent.message_id}"]`);
			await bubble.waitFor();
			await phone.waitForFunction((el) => {
				const r = el.getBoundingClientRect();
				return r.top >= 0 && r.bottom <= window.innerHeight;
			}, await bubble.elementHandle());
			await phone.screenshot({ path: path.join(outdir, 'sandbox-narrow-sent.png') });
			step('a 390 px wide screen: nothing scrolls sideways, a sent bubble is brought into view');
		}

		check(foreign.length === 0, `the page asked for other hosts: ${foreign.join(' ')}`);
		step('nothing was loaded from another host');
		check(pageErrors.length === 0 && consoleErrors.length === 0,
		      `errors in the page: ${pageErrors.concat(consoleErrors).join(' | ')}`);
		step('no errors in the page, no request refused by its Content-Security-Policy');
	} catch (e) {
		if (page)
			await page.screenshot({ path: path.join(outdir, 'failure.png') }).catch(() => {});
		console.log(`not ok - ${e.message}`);
		if (pageErrors.length || consoleErrors.length)
			console.log(`# page errors: ${pageErrors.concat(consoleErrors).join(' | ')}`);
		process.exitCode = 1;
	} finally {
		console.log(`# result ${JSON.stringify(result)}`);
		await browser.close();
	}
}

main().catch((e) => {
	console.error(e);
	process.exit(1);
});
