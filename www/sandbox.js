// sandbox.js — the /sandbox page (www/sandbox.html): the chats of the Bot API emulator as a
// Telegram client shows them, kept up to date by long polling /sandbox/messages (lighttpd passes
// it to the emulator's GET /_control/sandbox), and a form that sends an OTP through the
// gateway's real POST /send-otp and shows its answer as it came, errors included.
//
// Message text is untrusted. It arrives as Telegram clients get it, plain text plus entities
// (bold, code, ... as offsets in UTF-16 code units, which is what JavaScript strings count), and
// is put into the page with textContent and elements made here from a fixed table: no markup
// from the network is ever parsed. Links are kept only for http(s) and tg: URLs.
'use strict';

(function () {
	// How long the emulator may hold a poll open when nothing changes (a change answers it at
	// once). Short: lighttpd's graceful stop (Ctrl-C in make run) waits for requests under way.
	const POLL_WAIT_S = 3;
	const RETRY_MS = [500, 1000, 2000, 5000];
	const ON_TIME_S = 1;             // README: deleted "normally within a second" after delete_at
	const TICK_MS = 100;

	const $ = (id) => document.getElementById(id);
	const el = (tag, cls, text) => {
		const e = document.createElement(tag);
		if (cls)
			e.className = cls;
		if (text !== undefined)
			e.textContent = text;
		return e;
	};

	let view = null;            // the emulator's last answer
	let clockOffsetMs = 0;      // emulator clock minus ours
	let selected = null;        // chat_id shown
	let wanted = null;          // chat_id to show once the emulator's view has it (the form's)
	let reveal = null;          // key of the form's new message, to bring into view
	let shownChat = null;       // chat_id whose messages are in the list
	const nodes = new Map();    // "chat message_id" -> { li, msg } of the chat shown

	const now = () => Date.now() + clockOffsetMs;   // ms, on the emulator's clock

	// ---------------------------------------------------------------- formatting
	const pad = (n, w) => String(n).padStart(w || 2, '0');
	function clock(sec, ms) {
		const d = new Date(sec * 1000);
		const s = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
		return ms ? `${s}.${pad(d.getMilliseconds(), 3)}` : s;
	}
	const iso = (sec) => new Date(sec * 1000).toISOString();
	function lagText(s) {
		const a = Math.abs(s);
		return a < 1 ? Math.round(a * 1000) + ' ms' : seconds(a);
	}
	function seconds(s) {
		const a = Math.abs(s);
		return a < 100 ? a.toFixed(1) + ' s' : Math.round(a) + ' s';
	}

	// ---------------------------------------------------------------- icons (inline SVG)
	const ICONS = {
		shield: 'M12 2 4 5v6c0 5 3.4 9.7 8 11 4.6-1.3 8-6 8-11V5l-8-3zm-1 14-4-4 1.4-1.4L11 13.2l4.6-4.6L17 10l-6 6z',
		timer: 'M15 1H9v2h6V1zm4 6.4 1.4-1.4-1.4-1.4-1.5 1.4A9 9 0 1 0 19 7.4zM12 20a7 7 0 1 1 0-14 7 7 0 0 1 0 14zm1-11h-2v5h2V9z',
		trash: 'M6 19a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2V7H6v12zM19 4h-3.5l-1-1h-5l-1 1H5v2h14V4z',
		copy: 'M16 1H4a2 2 0 0 0-2 2v14h2V3h12V1zm3 4H8a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h11a2 2 0 0 0 2-2V7a2 2 0 0 0-2-2zm0 16H8V7h11v14z',
	};
	function icon(name) {
		const NS = 'http://www.w3.org/2000/svg';
		const svg = document.createElementNS(NS, 'svg');
		svg.setAttribute('viewBox', '0 0 24 24');
		svg.setAttribute('aria-hidden', 'true');
		svg.setAttribute('class', 'icon');
		const p = document.createElementNS(NS, 'path');
		p.setAttribute('d', ICONS[name]);
		svg.appendChild(p);
		return svg;
	}

	// ---------------------------------------------------------------- text + entities -> DOM
	const SAFE_URL = /^(https?:\/\/|tg:\/\/)/i;
	function entityElement(e) {
		switch (e.type) {
		case 'bold': return el('strong');
		case 'italic': return el('em');
		case 'underline': return el('u');
		case 'strikethrough': return el('s');
		case 'blockquote': return el('blockquote');
		case 'spoiler': {
			const s = el('span', 'spoiler');
			s.tabIndex = 0;
			s.setAttribute('role', 'button');
			s.setAttribute('aria-label', 'Spoiler: press to reveal');
			return s;
		}
		case 'code': return copyable(el('code', 'copy'));
		case 'pre': {
			const pre = el('pre', 'copy');
			if (e.language)
				pre.dataset.language = e.language;
			return copyable(pre);
		}
		case 'text_link': {
			if (typeof e.url !== 'string' || !SAFE_URL.test(e.url))
				return el('span', 'link-dropped');
			const a = el('a');
			a.href = e.url;
			a.rel = 'noopener noreferrer';
			a.target = '_blank';
			return a;
		}
		default: return el('span');
		}
	}

	function copyable(node) {
		node.tabIndex = 0;
		node.setAttribute('role', 'button');
		node.title = 'Copy';
		return node;
	}

	// Entities made from HTML nest; each one is placed inside the last open one that still
	// covers it (one that would cross its end is cut there, so bad input cannot break out).
	function renderText(text, entities) {
		const root = document.createDocumentFragment();
		const list = (Array.isArray(entities) ? entities : [])
			.filter((e) => Number.isInteger(e.offset) && Number.isInteger(e.length) &&
				e.offset >= 0 && e.length > 0 && e.offset < text.length)
			.sort((a, b) => a.offset - b.offset || b.length - a.length);
		const stack = [{ node: root, end: text.length }];
		let pos = 0;
		const flush = (to) => {
			if (to > pos) {
				stack[stack.length - 1].node.appendChild(document.createTextNode(text.slice(pos, to)));
				pos = to;
			}
		};
		const close = (upTo) => {
			while (stack.length > 1 && stack[stack.length - 1].end <= upTo) {
				flush(stack[stack.length - 1].end);
				stack.pop();
			}
		};
		for (const e of list) {
			close(e.offset);
			flush(e.offset);
			const parentEnd = stack[stack.length - 1].end;
			const node = entityElement(e);
			stack[stack.length - 1].node.appendChild(node);
			stack.push({ node, end: Math.min(e.offset + e.length, parentEnd) });
		}
		close(text.length);
		flush(text.length);
		return root;
	}

	// ---------------------------------------------------------------- copy, spoilers
	let toastTimer = 0;
	function toast(text) {
		const t = $('toast');
		t.textContent = text;
		t.classList.add('shown');
		clearTimeout(toastTimer);
		toastTimer = setTimeout(() => t.classList.remove('shown'), 1800);
	}

	async function copy(node) {
		const text = node.textContent;
		let ok = false;
		try {
			await navigator.clipboard.writeText(text);
			ok = true;
		} catch (e) {
			// not a secure context (http on another host than localhost): the old way
			const range = document.createRange();
			range.selectNodeContents(node);
			const sel = window.getSelection();
			sel.removeAllRanges();
			sel.addRange(range);
			try {
				ok = document.execCommand('copy');
			} catch (e2) {
				ok = false;
			}
			sel.removeAllRanges();
		}
		node.classList.add('copied');
		setTimeout(() => node.classList.remove('copied'), 700);
		toast(ok ? `Copied ${text} to the clipboard` : 'Could not copy: select it instead');
	}

	function activate(target) {
		const code = target.closest('.copy');
		if (code && !code.closest('.gone')) {
			copy(code);
			return true;
		}
		const spoiler = target.closest('.spoiler');
		if (spoiler) {
			spoiler.classList.add('revealed');
			spoiler.removeAttribute('role');
			spoiler.removeAttribute('aria-label');
			return true;
		}
		return false;
	}

	// ---------------------------------------------------------------- chats
	const key = (chatId, mid) => `${chatId} ${mid}`;

	function chatTitle(chat) {
		const c = chat.chat || {};
		if (c.type === 'private' || !c.type)
			return chat.chat_id;
		return c.username ? '@' + c.username : (c.title || chat.chat_id);
	}
	function chatKind(chat) {
		const c = chat.chat || {};
		return { private: 'private chat', group: 'group', supergroup: 'supergroup',
			 channel: 'channel' }[c.type] || 'chat';
	}
	function avatar(node, seed, label) {
		let h = 0;
		for (const ch of seed)
			h = (h * 31 + ch.codePointAt(0)) >>> 0;
		node.dataset.hue = String(h % 7);
		node.textContent = label.replace(/^[@-]/, '').slice(0, 2).toUpperCase() || '?';
	}

	// most recent message first, as Telegram lists chats
	const lastSent = (chat) => chat.messages.length ? chat.messages[chat.messages.length - 1].sent_at : 0;
	const byActivity = () => view.chats.slice().sort((a, b) => lastSent(b) - lastSent(a));

	function liveCount(chat) {
		return chat.messages.filter((m) => m.deleted_at === null).length;
	}

	function renderChatList() {
		const ul = $('chat-list');
		const chats = byActivity();
		// rebuilt on every change: the keyboard's place is kept
		const focused = ul.contains(document.activeElement) ? document.activeElement.dataset.chatId : null;
		ul.replaceChildren();
		for (const chat of chats) {
			const li = el('li');
			const b = el('button', 'chat-item');
			b.type = 'button';
			b.dataset.chatId = chat.chat_id;
			if (chat.chat_id === selected)
				b.setAttribute('aria-current', 'true');
			const av = el('span', 'avatar');
			av.setAttribute('aria-hidden', 'true');
			avatar(av, chat.chat_id, chatTitle(chat));
			const text = el('span', 'chat-item-text');
			text.appendChild(el('span', 'chat-item-title', chatTitle(chat)));
			const last = chat.messages[chat.messages.length - 1];
			const preview = !last ? '' : last.deleted_at !== null ? 'message deleted'
				: last.text.replace(/\s+/g, ' ');
			text.appendChild(el('span', 'chat-item-preview', preview));
			b.append(av, text);
			const live = liveCount(chat);
			if (live > 0) {
				const badge = el('span', 'badge', String(live));
				badge.title = `${live} message${live > 1 ? 's' : ''} not deleted yet`;
				b.appendChild(badge);
			}
			b.setAttribute('aria-label', `${chatTitle(chat)}, ${chatKind(chat)}, ` +
				`${chat.messages.length} messages, ${live} not deleted yet`);
			li.appendChild(b);
			ul.appendChild(li);
			if (chat.chat_id === focused)
				b.focus();
		}
	}

	function renderChatHead(chat) {
		const title = $('chat-title');
		const sub = $('chat-sub');
		const av = $('chat-avatar');
		if (!chat) {
			title.textContent = 'No chat yet';
			sub.textContent = 'messages the emulator receives show here';
			av.textContent = '';
			return;
		}
		const c = chat.chat || {};
		const bot = view.bot || {};
		if (c.type === 'private' || !c.type) {
			// what the user sees: a private chat with the bot
			title.textContent = bot.first_name || 'Bot';
			sub.textContent = `bot @${bot.username || 'bot'} · chat_id ${chat.chat_id}`;
			avatar(av, chat.chat_id, bot.first_name || 'B');
		} else {
			title.textContent = chatTitle(chat);
			sub.textContent = `${chatKind(chat)} · chat_id ${chat.chat_id}`;
			avatar(av, chat.chat_id, chatTitle(chat));
		}
	}

	// ---------------------------------------------------------------- messages
	function messageNode(chatId, m) {
		const li = el('li', 'msg');
		li.dataset.chatId = chatId;
		li.dataset.messageId = String(m.message_id);
		const bubble = el('div', 'bubble');
		const text = el('div', 'text');
		text.appendChild(renderText(m.text, m.entities));
		const meta = el('div', 'meta');
		if (m.protect_content) {
			const p = el('span', 'protected');
			p.title = 'protect_content: the recipient cannot forward or save this message';
			p.append(icon('shield'), document.createTextNode('protected'));
			meta.appendChild(p);
		}
		const sent = el('time', 'sent', clock(m.sent_at));
		sent.dateTime = iso(m.sent_at);
		sent.title = `sent ${iso(m.sent_at)}`;
		meta.appendChild(sent);
		const timer = el('div', 'timer');
		const bar = el('div', 'bar');
		bar.appendChild(el('span'));
		const left = el('span', 'left');
		const at = el('time', 'at');
		timer.append(icon('timer'), left, at, bar);
		bubble.append(text, meta, timer);
		const trace = el('p', 'trace');
		li.append(bubble, trace);
		return li;
	}

	function verdict(m) {
		if (m.delete_at === null)
			return null;
		const lag = m.deleted_at - m.delete_at;
		// POST /revoke-otp moved delete_at to the moment of the revoke
		if (m.first_delete_at && m.first_delete_at > m.delete_at)
			return { cls: 'revoked', word: 'revoked',
				 text: `${lagText(m.first_delete_at - m.deleted_at)} before its delete_at` };
		if (lag < 0)
			return { cls: 'early', word: 'early', text: `${lagText(lag)} before delete_at` };
		return { cls: lag <= ON_TIME_S ? 'on-time' : 'late', word: lag <= ON_TIME_S ? 'on time' : 'late',
			 text: `${lagText(lag)} after delete_at` };
	}

	function showDeleted(node, animate) {
		const { li, msg: m } = node;
		const trace = li.querySelector('.trace');
		const v = verdict(m);
		li.dataset.deletedAtMs = String(Math.round(m.deleted_at * 1000));
		li.dataset.seenDeletedMs = String(Date.now());
		// three pieces that wrap between, not within, on a narrow screen
		const what = el('span', 'trace-what');
		const when = el('time', null, clock(m.deleted_at, true));
		when.dateTime = iso(m.deleted_at);
		what.append(icon('trash'), document.createTextNode(' Deleted at '), when);
		trace.replaceChildren(what);
		if (v) {
			trace.append(el('span', 'trace-lag', v.text), el('span', 'verdict ' + v.cls, v.word));
			trace.title = `message ${m.message_id}: delete_at ${iso(m.delete_at)}, deleted ${iso(m.deleted_at)}`;
		}
		const bubble = li.querySelector('.bubble');
		const finish = () => {
			// the code leaves the page as it leaves the chat
			bubble.querySelector('.text').replaceChildren();
			li.dataset.state = 'deleted';
			if (animate)
				li.classList.add('just-deleted');
		};
		if (animate && !window.matchMedia('(prefers-reduced-motion: reduce)').matches) {
			li.dataset.state = 'deleting';
			bubble.addEventListener('animationend', finish, { once: true });
			setTimeout(finish, 1500);   // in case no animation runs (hidden tab)
			announce(`Message ${m.message_id} deleted${v ? ', ' + v.word : ''}.`);
		} else {
			finish();
		}
	}

	function tick() {
		const t = now() / 1000;
		for (const node of nodes.values()) {
			const { li, msg: m } = node;
			if (m.deleted_at !== null)
				continue;
			const left = li.querySelector('.left');
			const bar = li.querySelector('.bar > span');
			if (m.delete_at === null) {
				// the gateway writes its row right after the emulator answered
				li.dataset.state = t - m.sent_at < 10 ? 'live' : 'unscheduled';
				delete li.dataset.deleteAtMs;
				left.textContent = t - m.sent_at < 10 ? 'waiting for delete_at…'
					: 'not scheduled for deletion by the gateway';
				bar.style.transform = 'scaleX(1)';
				continue;
			}
			if (li.dataset.deleteAtMs !== String(Math.round(m.delete_at * 1000))) {
				li.dataset.deleteAtMs = String(Math.round(m.delete_at * 1000));
				const at = li.querySelector('.timer .at');
				at.textContent = `delete_at ${clock(m.delete_at, true)}`;
				at.dateTime = iso(m.delete_at);
			}
			const remaining = m.delete_at - t;
			const total = Math.max(m.delete_at - m.sent_at, 0.001);
			if (remaining > 0) {
				li.dataset.state = 'live';
				left.textContent = `self-destructs in ${seconds(remaining)}`;
				left.title = `delete_at ${iso(m.delete_at)}`;
				bar.style.transform = `scaleX(${Math.min(1, remaining / total)})`;
			} else {
				li.dataset.state = -remaining > ON_TIME_S ? 'overdue' : 'due';
				left.textContent = `due ${seconds(remaining)} ago · deleting…`;
				bar.style.transform = 'scaleX(0)';
			}
		}
	}

	function renderMessages(chat) {
		const list = $('message-list');
		const box = $('messages');
		if (!chat || chat.chat_id !== shownChat) {
			list.replaceChildren();
			nodes.clear();
			shownChat = chat ? chat.chat_id : null;
		}
		$('empty').hidden = Boolean(chat);
		if (!chat)
			return;
		let added = false;
		const keep = new Set();
		for (const m of chat.messages) {
			const k = key(chat.chat_id, m.message_id);
			keep.add(k);
			let node = nodes.get(k);
			if (!node) {
				node = { li: messageNode(chat.chat_id, m), msg: m };
				nodes.set(k, node);
				list.appendChild(node.li);
				added = true;
				if (m.deleted_at !== null)
					showDeleted(node, false);
				continue;
			}
			const wasLive = node.msg.deleted_at === null;
			node.msg = m;
			if (wasLive && m.deleted_at !== null)
				showDeleted(node, true);
		}
		for (const [k, node] of nodes) {   // gone from the emulator (reset)
			if (!keep.has(k)) {
				node.li.remove();
				nodes.delete(k);
			}
		}
		tick();
		if (added)   // a new message: to the bottom, as a messenger does
			box.scrollTop = box.scrollHeight;
		// on a phone the chat is below the form: show the bubble the form just sent
		if (reveal !== null && nodes.has(reveal)) {
			if (window.matchMedia('(max-width: 900px)').matches)
				nodes.get(reveal).li.scrollIntoView({ block: 'center' });
			reveal = null;
		}
	}

	function render() {
		if (!view)
			return;
		const has = (id) => id !== null && view.chats.some((c) => c.chat_id === id);
		if (has(wanted)) {
			selected = wanted;
			wanted = null;
		}
		if (!has(selected))
			selected = view.chats.length ? byActivity()[0].chat_id : null;
		const chat = view.chats.find((c) => c.chat_id === selected) || null;
		renderChatList();
		renderChatHead(chat);
		renderMessages(chat);
		// the emulator could not read the gateway's database: no countdowns, and why
		$('status').textContent = view.error ? 'live · no delete_at' : 'live';
		$('status').title = view.error ? `delete_at unavailable: ${view.error}` : '';
	}

	function select(chatId) {
		selected = chatId;
		render();
	}

	let announceTimer = 0;
	function announce(text) {
		const a = $('announce');
		a.textContent = text;
		clearTimeout(announceTimer);
		announceTimer = setTimeout(() => { a.textContent = ''; }, 4000);
	}

	// ---------------------------------------------------------------- polling
	function setStatus(state, text) {
		const s = $('status');
		s.dataset.state = state;
		s.textContent = text;
	}

	async function poll() {
		let version = -1;
		let failures = 0;
		for (;;) {
			try {
				const wait = version < 0 ? 0 : POLL_WAIT_S;
				const res = await fetch(`sandbox/messages?since=${version}&wait=${wait}`,
							{ cache: 'no-store', headers: { Accept: 'application/json' } });
				if (!res.ok)
					throw new Error(`HTTP ${res.status}`);
				const data = await res.json();
				if (!data || !Array.isArray(data.chats) || typeof data.version !== 'number')
					throw new Error('unexpected answer');
				clockOffsetMs = data.now * 1000 - Date.now();
				apiKeyRequired(res.headers.get('X-Sandbox-API-Key') === 'required');
				failures = 0;
				setStatus('live', data.error ? 'live · no delete_at' : 'live');
				if (data.version !== version) {
					version = data.version;
					view = data;
					render();
				}
			} catch (e) {
				setStatus('offline', `emulator unreachable (${e.message}): retrying`);
				await new Promise((r) => setTimeout(r, RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]));
			}
		}
	}

	// ---------------------------------------------------------------- the form
	function apiKeyRequired(yes) {
		if (yes && $('api-key-field').hidden) {
			$('api-key-field').hidden = false;
			curlExample(true);
		}
	}

	function curlExample(withKey) {
		$('curl-example').textContent =
			`curl -X POST ${location.origin}/send-otp \\\n` +
			'  -H "Content-Type: application/json" \\\n' +
			(withKey ? '  -H "X-API-Key: $API_KEY" \\\n' : '') +
			'  -d \'{"chat_id": "123456789", "otp": "483920",\n' +
			'       "expire_seconds": 30}\'';
	}

	function randomOtp() {
		const a = new Uint32Array(1);
		crypto.getRandomValues(a);
		return String(a[0] % 1000000).padStart(6, '0');
	}

	// What the user typed, as JSON: chat_id and otp as strings, expire_seconds as a number
	// when it reads as one (else as typed, so that the gateway's 422 can be seen).
	function body() {
		const out = { chat_id: $('chat-id').value.trim(), otp: $('otp').value.trim() };
		const exp = $('expire').value.trim();
		if (exp !== '')
			out.expire_seconds = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(exp) ? JSON.parse(exp) : exp;
		return out;
	}

	function showAnswer(status, statusText, ms, headers, text) {
		const box = $('answer');
		box.replaceChildren();
		const line = el('p', 'answer-status');
		const code = el('span', 'http-status', status ? `${status} ${statusText}` : 'no answer');
		code.dataset.class = status ? String(status)[0] + 'xx' : 'none';
		line.append(el('span', 'answer-route', 'POST /send-otp'), code, el('span', 'answer-ms', `${ms} ms`));
		box.appendChild(line);
		for (const h of headers)
			box.appendChild(el('p', 'answer-header', h));
		let shown = text;
		try {
			shown = JSON.stringify(JSON.parse(text), null, 2);
		} catch (e) {
			// not JSON: shown as it came
		}
		const pre = el('pre', 'answer-json', shown);
		pre.id = 'answer-json';
		box.appendChild(pre);
	}

	async function send(ev) {
		ev.preventDefault();
		const button = $('send');
		const headers = { 'Content-Type': 'application/json' };
		const apiKey = $('api-key').value;
		if (apiKey)
			headers['X-API-Key'] = apiKey;
		const payload = body();
		button.disabled = true;
		button.textContent = 'Sending…';
		const t0 = performance.now();
		try {
			const res = await fetch('send-otp', { method: 'POST', headers, body: JSON.stringify(payload),
							      cache: 'no-store' });
			const text = await res.text();
			const extra = ['Retry-After', 'Allow'].filter((h) => res.headers.has(h))
				.map((h) => `${h}: ${res.headers.get(h)}`);
			showAnswer(res.status, res.statusText, Math.round(performance.now() - t0), extra, text);
			if (res.status === 401)
				apiKeyRequired(true);
			if (res.ok) {
				let answer = null;
				try {
					answer = JSON.parse(text);
				} catch (e) {
					answer = null;
				}
				if (answer && answer.chat_id !== undefined) {
					wanted = String(answer.chat_id);
					reveal = key(wanted, answer.message_id);
					render();
				}
				$('otp').value = randomOtp();
			}
		} catch (e) {
			showAnswer(0, '', Math.round(performance.now() - t0), [], `The request failed: ${e.message}`);
		} finally {
			button.disabled = false;
			button.textContent = 'Send';
		}
	}

	// ---------------------------------------------------------------- wiring
	function init() {
		$('otp').value = randomOtp();
		$('new-otp').addEventListener('click', () => { $('otp').value = randomOtp(); $('otp').focus(); });
		$('send-form').addEventListener('submit', send);
		$('chat-list').addEventListener('click', (ev) => {
			const b = ev.target.closest('.chat-item');
			if (b)
				select(b.dataset.chatId);
		});
		$('message-list').addEventListener('click', (ev) => activate(ev.target));
		$('message-list').addEventListener('keydown', (ev) => {
			if ((ev.key === 'Enter' || ev.key === ' ') && activate(ev.target))
				ev.preventDefault();
		});
		curlExample(false);
		setInterval(tick, TICK_MS);
		poll();
	}

	init();
}());
