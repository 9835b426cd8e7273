#!/usr/bin/env node
// signin.spec.js — clients/php/signin-example.php as a person uses it, in Debian's headless
// Chromium driven by playwright-core (as docs.spec.js).
//
//   node tests/browser/signin.spec.js PAGE_URL EMULATOR_URL OUTDIR CHAT_ID LOCK_CHAT_ID
//
// PAGE_URL serves the page (php -S) in front of a gateway whose Bot API is the emulator at
// EMULATOR_URL (tests/integration/test_php_client.py starts both). Asks a code for CHAT_ID, reads
// it from the emulator as the user reads it in Telegram, types it and is signed in, the page
// saying the message was revoked. Then, signed out, asks a code for LOCK_CHAT_ID and types three
// wrong ones: the attempt is locked, and the right code typed afterwards signs nobody in.
// Screenshots go to OUTDIR (signin-code.png, signin-done.png, signin-locked.png; failure.png).
// The last line is "# result {JSON}" with the message ids the Python side checks.
'use strict';

const fs = require('fs');
const path = require('path');

const WWW_MODULES = path.resolve(__dirname, '../../www/node_modules');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
	'--no-first-run', '--disable-background-networking', '--disable-component-update',
	'--disable-sync'];

function step(what) {
	console.log(`ok - ${what}`);
}

function check(cond, what) {
	if (!cond)
		throw new Error(what);
}

// The code in the chat's newest message, as the emulator holds it (what Telegram would show).
async function codeFromEmulator(emulator, chatId) {
	for (let i = 0; i < 100; i++) {
		const r = await fetch(`${emulator}/_control/messages?chat_id=${chatId}`);
		const msgs = (await r.json()).messages;
		if (msgs.length) {
			const last = msgs[msgs.length - 1];
			const m = /(\d{6})/.exec(last.text);
			check(m, `no code in ${JSON.stringify(last.text)}`);
			return { code: m[1], messageId: last.message_id };
		}
		await new Promise((res) => setTimeout(res, 100));
	}
	throw new Error(`no message for chat ${chatId} in the emulator`);
}

async function state(page, expected) {
	await page.locator(`body[data-state="${expected}"]`).waitFor();
	const note = page.locator('#note');
	return await note.count() ? (await note.innerText()).trim() : '';
}

async function askCode(page, url, chatId) {
	await page.goto(url);
	await state(page, 'ask-chat');
	await page.fill('#chat-id', chatId);
	await page.click('#send');
	const note = await state(page, 'ask-code');
	check(/on its way/.test(note), `after the send the page says ${note}`);
}

async function main() {
	const [url, emulator, outdir, chatId, lockChatId] = process.argv.slice(2);
	if (!url || !emulator || !outdir || !chatId || !lockChatId) {
		console.error('usage: node signin.spec.js PAGE_URL EMULATOR_URL OUTDIR CHAT_ID LOCK_CHAT_ID');
		process.exit(2);
	}
	let chromium;
	try {
		({ chromium } = require(path.join(WWW_MODULES, 'playwright-core')));
	} catch (e) {
		console.error(`playwright-core not installed: run www/build-assets.sh (${e.message})`);
		process.exit(3);
	}
	fs.mkdirSync(outdir, { recursive: true });
	const result = {};
	const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
						args: CHROMIUM_ARGS });
	let page;
	try {
		page = await (await browser.newContext({ viewport: { width: 800, height: 600 } })).newPage();

		await askCode(page, url, chatId);
		const sent = await codeFromEmulator(emulator, chatId);
		result.signed_in_message_id = sent.messageId;
		step(`a code sent to chat ${chatId}, read from the emulator (message ${sent.messageId})`);
		await page.screenshot({ path: path.join(outdir, 'signin-code.png') });
		await page.fill('#code', sent.code);
		await page.click('#check');
		const done = await state(page, 'signed-in');
		check(/^Signed in; the message with the code was revoked \(20[02]\)\.$/.test(done),
		      `after the right code the page says ${done}`);
		check((await page.locator('#welcome').innerText()).includes(chatId), 'welcome names the chat');
		step(`signed in with the code: "${done}"`);
		await page.screenshot({ path: path.join(outdir, 'signin-done.png') });
		await page.click('button[value="sign-out"]');
		await state(page, 'ask-chat');
		step('signed out');

		await askCode(page, url, lockChatId);
		const locked = await codeFromEmulator(emulator, lockChatId);
		result.locked_message_id = locked.messageId;
		const wrong = String((Number(locked.code) + 1) % 1000000).padStart(6, '0');
		for (const left of ['2 tries left', '1 try left']) {
			await page.fill('#code', wrong);
			await page.click('#check');
			const note = await state(page, 'ask-code');
			check(note === `Wrong code: ${left}.`, `after a wrong code the page says ${note}`);
		}
		await page.fill('#code', wrong);
		await page.click('#check');
		const lockNote = await state(page, 'locked');
		check(/^3 wrong codes: this attempt is locked; the message with the code was revoked \(20[02]\)\. Ask for a new code\.$/.test(lockNote),
		      `after the third wrong code the page says ${lockNote}`);
		step(`three wrong codes lock the attempt: "${lockNote}"`);
		await page.screenshot({ path: path.join(outdir, 'signin-locked.png') });
		// the right code now: the form is gone, and a replayed POST finds no code pending
		check(await page.locator('#code').count() === 0, 'no code field once locked');
		const replay = await page.evaluate(async (code) => {
			const form = new FormData();
			form.set('csrf', document.querySelector('input[name=csrf]').value);
			form.set('action', 'check');
			form.set('code', code);
			const r = await fetch(location.href, { method: 'POST', body: form });
			return r.text();
		}, locked.code);
		check(replay.includes('data-state="ask-chat"') && replay.includes('No code is pending'),
		      'the right code after the lock signs nobody in');
		step('the right code after the lock is refused: no code is pending');
	} catch (e) {
		if (page)
			await page.screenshot({ path: path.join(outdir, 'failure.png') }).catch(() => {});
		console.log(`not ok - ${e.message}`);
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
