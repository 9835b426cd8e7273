# settings-to-man.awk — docs/settings.md as the man page otp-gateway.env(5), so that an installed
# system documents every setting without a second copy to keep in step. It knows only what
# settings.md uses: a title, paragraphs, "- " lists (continued by indented lines), one table of
# settings (setting | default | meaning), `code`, **bold** and [links](target).
#   awk -v date=YYYY-MM-DD -f docs/settings-to-man.awk docs/settings.md > otp-gateway.env.5

function escape(s) {
	gsub(/\\/, "\\e", s)
	return s
}

# inline markup: links keep their text, `code` and **bold** turn bold
function inline(s,    out, i) {
	s = escape(s)
	while (match(s, /\[[^]]*\]\([^)]*\)/)) {
		out = substr(s, RSTART + 1, RLENGTH)
		sub(/\]\(.*/, "", out)
		s = substr(s, 1, RSTART - 1) out substr(s, RSTART + RLENGTH)
	}
	while ((i = index(s, "**")) > 0) {
		s = substr(s, 1, i - 1) "\\fB" substr(s, i + 2)
		if ((i = index(s, "**")) > 0)
			s = substr(s, 1, i - 1) "\\fR" substr(s, i + 2)
	}
	while ((i = index(s, "`")) > 0) {
		s = substr(s, 1, i - 1) "\\fB" substr(s, i + 1)
		if ((i = index(s, "`")) > 0)
			s = substr(s, 1, i - 1) "\\fR" substr(s, i + 1)
	}
	return s
}

# a text line as roff: never one that starts a request
function text(s) {
	s = inline(s)
	if (s ~ /^[.']/)
		s = "\\&" s
	print s
}

function trim(s) {
	sub(/^[ \t]+/, "", s)
	sub(/[ \t]+$/, "", s)
	return s
}

BEGIN {
	print ".\\\" Made from docs/settings.md by docs/settings-to-man.awk: edit that file instead."
	print ".TH OTP-GATEWAY.ENV 5 \"" date "\" \"otp-gateway\" \"otp-gateway\""
	print ".SH NAME"
	print "otp-gateway.env \\- the settings of otp-fcgi and otp-deleter"
	print ".SH DESCRIPTION"
	para = 0
}

/^# / { next }

/^## / {
	print ".SH " toupper(substr($0, 4))
	para = 0
	next
}

/^\|---/ { next }

/^\| setting \|/ {
	print ".SH SETTINGS"
	para = 0
	next
}

/^\|/ {
	n = split($0, cell, "|")
	name = trim(cell[2]); dflt = trim(cell[3]); meaning = ""
	for (i = 4; i < n; i++)
		meaning = meaning (i > 4 ? "|" : "") cell[i]
	meaning = trim(meaning)
	print ".TP"
	text(name)
	if (meaning != "")
		text(meaning)
	print ".br"
	text("Default: " dflt)
	para = 0
	next
}

/^$/ { para = 0; next }

/^- / {
	print ".IP \\(bu 2"
	text(substr($0, 3))
	para = 1
	next
}

/^  [^ ]/ {
	text(trim($0))
	next
}

{
	if (!para) {
		print ".PP"
		para = 1
	}
	text($0)
}

END {
	print ".SH SEE ALSO"
	print ".BR otp-fcgi (8),"
	print ".BR otp-deleter (8)"
}
