#!/usr/bin/env bash
# conf/run.sh — what `make run` runs: a front end (SERVER: lighttpd, the default, nginx, apache
# or apache-fcgid; conf/serve.sh starts it from the shipped config) and otp-deleter in the
# foreground, on $HOST:$PORT. Settings come from the environment and from .env in the project
# root (the environment wins). Without a bot token it starts in sandbox mode: the bundled Bot
# API emulator (tests/fakebot) stands in for Telegram. Ctrl-C or SIGTERM stops everything.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$root" && cd "${1:-build}" && pwd)
python=/usr/bin/python3

# KEY=VALUE lines, '#' comments, optional quotes, no expansion (as otp-fcgi reads OTP_ENV_FILE).
load_env_file() {
	local line key value
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line#"${line%%[![:space:]]*}"}
		case $line in '' | '#'*) continue ;; esac
		line=${line#export }
		key=${line%%=*}
		value=${line#*=}
		value=${value%$'\r'}
		if ! [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ "$key" = "$line" ]; then
			echo "run: $1: not KEY=VALUE: $line" >&2
			exit 1
		fi
		case $value in
		\"*) value=${value#\"}; value=${value%%\"*} ;;
		\'*) value=${value#\'}; value=${value%%\'*} ;;
		*) value=${value%%[[:space:]]#*}; value=${value%"${value##*[![:space:]]}"} ;;
		esac
		[ -n "${!key+x}" ] || export "$key=$value"
	done <"$1"
}

[ -f "$root/.env" ] && load_env_file "$root/.env"
export HOST=${HOST:-127.0.0.1} PORT=${PORT:-55155}
SERVER=${SERVER:-lighttpd}
# otp-fcgi under mod_fcgid runs as Apache's user, and must share the database with otp-deleter:
# started as root, the deleter runs as that user too (docs/deploy.md)
as_web_user=()
if [ "$SERVER" = apache-fcgid ] && [ "$(id -u)" -eq 0 ]; then
	web_user=${OTP_WEB_USER:-www-data}
	as_web_user=(setpriv --reuid="$web_user" --regid="$web_user" --clear-groups)
fi

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/otp-gateway-run.XXXXXX")
pids=()
server=
cleanup() {
	trap - INT TERM EXIT
	# the front end first and gracefully (serve.sh takes SIGTERM so): requests under way
	# finish, so every message Telegram delivered is recorded for deletion; then the deleter
	# and the emulator
	if [ -n "$server" ]; then
		kill -TERM "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
	fi
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if [ -z "${TELEGRAM_BOT_TOKEN:-}${TELEGRAM_BOT_TOKEN_FILE:-}" ]; then
	export OTP_SANDBOX=1
	# the emulator's messages go with it: a stop need not wait for their deletion
	export DELETER_STOP_TIMEOUT_SECONDS=${DELETER_STOP_TIMEOUT_SECONDS:-0}
	if [ -z "${OTP_DB_PATH:-}" ]; then
		# a directory of our own (the programs refuse one that others may write), emptied at
		# each start: the emulator numbers its messages from 1 again
		sandbox_dir=/dev/shm/otp-gateway-sandbox-$("${as_web_user[@]}" id -u)
		"${as_web_user[@]}" mkdir -p -m 0700 "$sandbox_dir"
		rm -f "$sandbox_dir"/pending.db*
		export OTP_DB_PATH=$sandbox_dir/pending.db
	fi
	# the emulator reads the database for the /sandbox page's countdowns (delete_at)
	"$python" "$root/tests/fakebot/fakebot.py" --port 0 --port-file "$run_dir/fakebot.port" \
		--latency-ms "${SANDBOX_LATENCY_MS:-150}" \
		--sandbox-db "$OTP_DB_PATH" >/dev/null &
	pids+=($!)
	for _ in $(seq 100); do [ -s "$run_dir/fakebot.port" ] && break; sleep 0.05; done
	[ -s "$run_dir/fakebot.port" ] || { echo "run: the Bot API emulator did not start" >&2; exit 1; }
	export TELEGRAM_API_BASE="http://127.0.0.1:$(cat "$run_dir/fakebot.port")"
	cat >&2 <<MSG
==========================================================================================
  SANDBOX MODE: no TELEGRAM_BOT_TOKEN is set, so no message goes to Telegram.
  A Bot API emulator answers at $TELEGRAM_API_BASE
  (see what it received: curl $TELEGRAM_API_BASE/_control/messages).
  Watch the chats and send a code: http://$HOST:$PORT/sandbox
  Put TELEGRAM_BOT_TOKEN=... in .env to send real messages.
==========================================================================================
MSG
fi

export OTP_FCGI_BIN=$build/otp-fcgi OTP_RUN_DIR=$run_dir OTP_WWW_DIR=$root/www
"$build/otp-fcgi" --check-config >/dev/null # one clear line and a failure on a bad setting

chmod 0711 "$run_dir" # the web server's user (as root: www-data) reaches the sockets in it
"${as_web_user[@]}" "$build/otp-deleter" &
pids+=($!)
"$root/conf/serve.sh" "$SERVER" &
server=$!
echo "otp-gateway ($SERVER) listening on http://$HOST:$PORT/ (Ctrl-C stops it)" >&2
wait -n "${pids[@]}" "$server" || true
echo "run: a process exited; stopping the rest" >&2
