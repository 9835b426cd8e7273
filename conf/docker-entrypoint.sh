#!/bin/sh
# conf/docker-entrypoint.sh — the container's (or any plain host's) supervisor: otp-deleter in
# the background, lighttpd (spawning otp-fcgi) in the foreground. On SIGTERM/SIGINT both stop
# and it exits 0; when either exits by itself, the other is stopped and it exits 1, so that the
# container stops and a restart policy can act. As PID 1 it gets the stop signal (SIGTERM) itself:
# the web server stops first, then otp-deleter drains (it deletes what is pending, each row at its
# time, within DELETER_STOP_TIMEOUT_SECONDS), so the stop timeout must cover both.
# Paths come from the environment (the Dockerfile sets them):
#   OTP_FCGI_BIN OTP_DELETER_BIN OTP_WWW_DIR OTP_RUN_DIR OTP_LIGHTTPD_CONF, and the settings.
set -eu

: "${OTP_DELETER_BIN:=/usr/local/bin/otp-deleter}"
: "${OTP_FCGI_BIN:=/usr/local/bin/otp-fcgi}"
: "${OTP_LIGHTTPD_CONF:=/etc/otp-gateway/lighttpd.conf}"
: "${OTP_RUN_DIR:=/run/otp-gateway}"
: "${OTP_DB_PATH:=$OTP_RUN_DIR/pending.db}"
: "${HOST:=0.0.0.0}" "${PORT:=55155}"
export OTP_FCGI_BIN OTP_RUN_DIR OTP_DB_PATH HOST PORT

# The token as a file, never in the environment of every process: a Docker/podman/Compose secret
# named telegram_bot_token is mounted here, and is used when no token is given otherwise.
secret=/run/secrets/telegram_bot_token
if [ -z "${TELEGRAM_BOT_TOKEN:-}${TELEGRAM_BOT_TOKEN_FILE:-}" ] && [ -f "$secret" ]; then
	export TELEGRAM_BOT_TOKEN_FILE="$secret"
fi

mkdir -p "$OTP_RUN_DIR" 2>/dev/null || true
if ! [ -w "$OTP_RUN_DIR" ]; then
	echo "otp-gateway: $OTP_RUN_DIR is not writable by uid $(id -u): mount the tmpfs for it" \
		"(docker: --tmpfs $OTP_RUN_DIR:uid=$(id -u),gid=$(id -g),mode=0750; podman: --tmpfs $OTP_RUN_DIR:U)" >&2
	exit 1
fi
"$OTP_FCGI_BIN" --check-config >/dev/null # a bad setting stops here, with one line naming it

"$OTP_DELETER_BIN" &
deleter=$!
lighttpd -D -f "$OTP_LIGHTTPD_CONF" &
server=$!

stop() {
	trap - TERM INT
	status=${1:-0}
	# lighttpd first and gracefully (SIGINT): requests under way finish, so every message
	# Telegram delivered is recorded for deletion before the container goes
	kill -INT "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	kill -TERM "$deleter" 2>/dev/null || true
	wait "$deleter" 2>/dev/null || true
	exit "$status"
}
trap stop TERM INT

# POSIX sh has no `wait -n`: poll both children, stop when either is gone
while kill -0 "$server" 2>/dev/null && kill -0 "$deleter" 2>/dev/null; do
	sleep 1 &
	wait $! || true
done
echo "otp-gateway: a process exited; stopping" >&2
stop 1
