#!/bin/sh
# conf/docker-entrypoint.sh — the container's (or any plain host's) supervisor: otp-deleter in
# the background, lighttpd (spawning otp-fcgi) in the foreground; when either exits, or on
# SIGTERM/SIGINT, both stop. Paths come from the environment (the Dockerfile sets them):
#   OTP_FCGI_BIN OTP_DELETER_BIN OTP_WWW_DIR OTP_RUN_DIR OTP_LIGHTTPD_CONF, and the settings.
set -eu

: "${OTP_DELETER_BIN:=/usr/local/bin/otp-deleter}"
: "${OTP_FCGI_BIN:=/usr/local/bin/otp-fcgi}"
: "${OTP_LIGHTTPD_CONF:=/etc/otp-gateway/lighttpd.conf}"
: "${OTP_RUN_DIR:=/run/otp-gateway}"
: "${OTP_DB_PATH:=$OTP_RUN_DIR/pending.db}"
: "${HOST:=0.0.0.0}" "${PORT:=55155}"
export OTP_FCGI_BIN OTP_RUN_DIR OTP_DB_PATH HOST PORT

mkdir -p "$OTP_RUN_DIR"
"$OTP_FCGI_BIN" --check-config >/dev/null # a bad setting stops here, with one line naming it

"$OTP_DELETER_BIN" &
deleter=$!
lighttpd -D -f "$OTP_LIGHTTPD_CONF" &
server=$!

stop() {
	trap - TERM INT
	# lighttpd first and gracefully (SIGINT): requests under way finish, so every message
	# Telegram delivered is recorded for deletion before the container goes
	kill -INT "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	kill -TERM "$deleter" 2>/dev/null || true
	wait "$deleter" 2>/dev/null || true
	exit 0
}
trap stop TERM INT

# POSIX sh has no `wait -n`: poll both children, stop when either is gone
while kill -0 "$server" 2>/dev/null && kill -0 "$deleter" 2>/dev/null; do
	sleep 1 &
	wait $! || true
done
echo "otp-gateway: a process exited; stopping" >&2
stop
