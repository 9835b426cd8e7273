#!/usr/bin/env node
// docs.spec.js — the API docs as a person sees them, in Debian's headless Chromium driven by
// playwright-core (both installed by .ci/install-deps and www/build-assets.sh).
//
//   node tests/browser/docs.spec.js BASE_URL OUTDIR CHAT_ID OTP
//
// Against a running gateway at BASE_URL (tests/integration/test_browser.py starts one with the
// Bot API emulator): opens /docs (Swagger UI), finds POST /send-otp, sends CHAT_ID and OTP with
// "Try it out" and waits for the 200 in the page, then revokes that message with POST
// /revoke-otp's "Try it out" (200); opens /redoc (ReDoc) and finds the send operation. Screenshots go to OUTDIR: docs.png, docs-try-it-out.png, redoc.png (failure.png
// when a step fails). Any request to another host than BASE_URL's is blocked and fails the run:
// the pages must load nothing from the internet. Exit code 0 when every step passed; one line
// per step on stdout.
'use strict';

const fs = require('fs');
const path = require('path');

const WWW_MODULES = path.resolve(__dirname, '../../www/node_modules');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The machine has no internet: without these, chromium keeps trying to reach Google's services.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
	'--no-first-run', '--disable-background-networking', '--disable-component-update',
	'--disable-sync'];
const TIMEOUT_MS = 20000;

function usage() {
	console.error('usage: node docs.spec.js BASE_URL OUTDIR CHAT_ID OTP');
	process.exit(2);
}

function step(what) {
	console.log(`ok - ${what}`);
}

async function main() {
	const [base, outdir, chatId, otp] = process.argv.slice(2);
	if (!base || !outdir || !chatId || !otp)
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
	const foreign = [];       // requests to anywhere but the gateway
	const pageErrors = [];    // uncaught exceptions in the pages
	const consoleErrors = []; // what the pages logged as errors, CSP refusals among them

	const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
						args: CHROMIUM_ARGS });
	let page;
	try {
		const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
		await context.route('**/*', (route) => {
			const url = route.request().url();
			if (url.startsWith(origin + '/') || url.startsWith('data:') || url.startsWith('blob:'))
				return route.continue();
			foreign.push(url);
			return route.abort();
		});
		page = await context.newPage();
		page.setDefaultTimeout(TIMEOUT_MS);
		page.on('pageerror', (err) => pageErrors.push(String(err)));
		page.on('console', (msg) => {
			if (msg.type() === 'error')
				consoleErrors.push(`${page.url()}: ${msg.text()}`);
		});

		// Swagger UI: the operation is listed
		const docs = await page.goto(`${origin}/docs`);
		if (docs.status() !== 200)
			throw new Error(`/docs answered ${docs.status()}`);
		await page.locator('.info .title').filter({ hasText: 'OTP Social Gateway' }).waitFor();
		const op = page.locator('#operations-OTP-send_otp');
		await op.locator('.opblock-summary-method', { hasText: 'POST' }).waitFor();
		await op.locator('.opblock-summary-path', { hasText: '/send-otp' }).waitFor();
		step('/docs lists POST /send-otp');
		await page.screenshot({ path: path.join(outdir, 'docs.png'), fullPage: true });

		// "Try it out": edit the example body, execute, see the 200 and its body
		await op.locator('.opblock-summary-control').click();
		await op.locator('button.try-out__btn').click();
		const body = op.locator('.body-param textarea');
		await body.fill(JSON.stringify({ chat_id: chatId, otp, expire_seconds: 30 }, null, 2));
		await op.locator('button.execute').click();
		const live = op.locator('.live-responses-table');
		await live.locator('.response-col_status', { hasText: '200' }).waitFor();
		const shown = await live.locator('.response-col_description pre').first().innerText();
		const answer = JSON.parse(shown);
		if (answer.success !== true || answer.chat_id !== chatId || !(answer.message_id > 0))
			throw new Error(`unexpected answer in the page: ${shown}`);
		step(`"Try it out" sent the OTP: 200, message_id ${answer.message_id}`);
		// from the operation's title to the server's answer (the documented responses follow)
		const clip = await op.evaluate((el) => {
			const r = el.getBoundingClientRect();
			const end = el.querySelector('.live-responses-table').getBoundingClientRect();
			return { x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width,
				 height: end.bottom - r.top + 16 };
		});
		await page.screenshot({ path: path.join(outdir, 'docs-try-it-out.png'), fullPage: true,
					clip });

		// "Try it out" on POST /revoke-otp: the message just sent is deleted at once
		const rop = page.locator('#operations-OTP-revoke_otp');
		await rop.locator('.opblock-summary-path', { hasText: '/revoke-otp' }).waitFor();
		await rop.locator('.opblock-summary-control').click();
		await rop.locator('button.try-out__btn').click();
		await rop.locator('.body-param textarea').fill(
			JSON.stringify({ chat_id: chatId, message_id: answer.message_id }, null, 2));
		await rop.locator('button.execute').click();
		const rlive = rop.locator('.live-responses-table');
		await rlive.locator('.response-col_status', { hasText: '200' }).waitFor();
		const rshown = await rlive.locator('.response-col_description pre').first().innerText();
		const revoked = JSON.parse(rshown);
		if (revoked.success !== true || revoked.message_id !== answer.message_id ||
		    !revoked.deleted_at)
			throw new Error(`unexpected revoke answer in the page: ${rshown}`);
		step(`"Try it out" revoked it: 200, deleted_at ${revoked.deleted_at}`);

		// ReDoc: the operation is there too
		const redoc = await page.goto(`${origin}/redoc`);
		if (redoc.status() !== 200)
			throw new Error(`/redoc answered ${redoc.status()}`);
		await page.locator('h1', { hasText: 'OTP Social Gateway' }).waitFor();
		const section = page.locator('[data-section-id="tag/OTP/operation/send_otp"]');
		await section.locator('h2', { hasText: 'Send an OTP' }).waitFor();
		await section.getByText('/send-otp', { exact: true }).first().waitFor();
		await section.scrollIntoViewIfNeeded();
		step('/redoc shows POST /send-otp');
		await page.screenshot({ path: path.join(outdir, 'redoc.png') });

		if (foreign.length > 0)
			throw new Error(`the pages asked for other hosts: ${foreign.join(' ')}`);
		step('nothing was loaded from another host');
		if (pageErrors.length > 0 || consoleErrors.length > 0)
			throw new Error(`errors in the pages: ${pageErrors.concat(consoleErrors).join(' | ')}`);
		step('no errors in the pages, no request refused by their Content-Security-Policy');
	} catch (e) {
		if (page)
			await page.screenshot({ path: path.join(outdir, 'failure.png') }).catch(() => {});
		console.log(`not ok - ${e.message}`);
		if (foreign.length > 0)
			console.log(`# blocked: ${foreign.join(' ')}`);
		process.exitCode = 1;
	} finally {
		await browser.close();
	}
}

main().catch((e) => {
	console.error(e);
	process.exit(1);
});
