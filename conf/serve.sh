#!/usr/bin/env bash
# conf/serve.sh SERVER — runs one front end of otp-gateway in the foreground from the shipped
# configs: lighttpd (lighttpd.conf, spawning otp-fcgi), nginx (conf/nginx.conf + a spawn-fcgi
# pool), apache (conf/apache-proxy-fcgi.conf + a spawn-fcgi pool) or apache-fcgid
# (conf/apache-fcgid.conf; Apache spawns otp-fcgi). otp-deleter is not started here.
# `make run SERVER=...` (conf/run.sh) and the integration tests start every front end this way.
#
# Environment: HOST PORT (where to listen), OTP_FCGI_BIN, OTP_RUN_DIR (a private directory for
# sockets, pid files and the rendered configs), OTP_WWW_DIR, and the settings, which otp-fcgi
# inherits (apache-fcgid: written to OTP_ENV_FILE, which mod_fcgid passes on, unless it is set).
# Started as root, the web server's workers (and mod_fcgid's otp-fcgi) run as OTP_WEB_USER
# (www-data), which owns the sockets.
# SIGTERM or SIGINT stops the web server gracefully (requests under way finish, so a code
# Telegram delivered is recorded for deletion), then the pool. (A script that starts this one
# in the background must send SIGTERM: bash ignores SIGINT in background jobs.) When any process
# of the front end exits, the rest are stopped and the exit status is non-zero.
set -euo pipefail

conf=$(cd "$(dirname "$0")" && pwd)
server=${1:-lighttpd}
: "${HOST:?}" "${PORT:?}" "${OTP_FCGI_BIN:?}" "${OTP_RUN_DIR:?}" "${OTP_WWW_DIR:?}"
export HOST PORT OTP_FCGI_BIN OTP_RUN_DIR OTP_WWW_DIR
# lighttpd.conf sits in the project's root, and in share/otp-gateway/ when installed
lighttpd_conf=${OTP_LIGHTTPD_CONF:-$conf/../lighttpd.conf}
[ -f "$lighttpd_conf" ] || lighttpd_conf=$conf/lighttpd.conf
web_user=${OTP_WEB_USER:-www-data} # the web server's workers when started as root
root_user() { [ "$(id -u)" -eq 0 ]; }
root_user && chmod o+x "$OTP_RUN_DIR" # the workers (web_user) reach the sockets in it

pids=()
web=
stop() {
	local sig
	trap - INT TERM
	if [ -n "$web" ]; then
		case $server in lighttpd) sig=INT ;; nginx) sig=QUIT ;; apache*) sig=WINCH ;; esac
		kill -"$sig" "$web" 2>/dev/null || true
		wait "$web" 2>/dev/null || true
	fi
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'stop; exit 0' INT TERM

# the spawn-fcgi pool of nginx and apache: one otp-fcgi per socket, each in the foreground (-n)
# so that its log stays on our stderr; the socket is the web server's user's when root
start_pool() {
	local i owner=()
	root_user && owner=(-U "$web_user")
	for i in 0 1; do
		spawn-fcgi -n -s "$OTP_RUN_DIR/otp-fcgi-$i.sock" -M 0660 "${owner[@]}" -- "$OTP_FCGI_BIN" &
		pids+=($!)
	done
	for _ in $(seq 200); do
		[ -S "$OTP_RUN_DIR/otp-fcgi-0.sock" ] && [ -S "$OTP_RUN_DIR/otp-fcgi-1.sock" ] && return 0
		sleep 0.05
	done
	echo "serve: the otp-fcgi pool did not start" >&2
	return 1
}

# ${VAR} placeholders of the shipped nginx server block, filled from the environment
render_nginx() {
	envsubst '${HOST} ${PORT} ${OTP_RUN_DIR} ${OTP_WWW_DIR}' <"$conf/nginx.conf" >"$OTP_RUN_DIR/nginx-site.conf"
	mkdir -p "$OTP_RUN_DIR/nginx-tmp"
	# relative includes (fastcgi_params) resolve beside the main config, as in /etc/nginx
	ln -sf /etc/nginx/fastcgi_params "$OTP_RUN_DIR/fastcgi_params"
	{
		echo "daemon off;"
		echo "worker_processes 1;"
		echo "pid $OTP_RUN_DIR/nginx.pid;"
		echo "error_log stderr warn;"
		root_user && echo "user $web_user;"
		echo "events { worker_connections 1024; }"
		echo "http {"
		echo "    include /etc/nginx/mime.types;"
		echo "    access_log off;"
		for t in client_body proxy fastcgi uwsgi scgi; do
			echo "    ${t}_temp_path $OTP_RUN_DIR/nginx-tmp/$t;"
		done
		echo "    include $OTP_RUN_DIR/nginx-site.conf;"
		echo "}"
	} >"$OTP_RUN_DIR/nginx.conf"
}

# A main config for Apache around the shipped virtual host (Debian's apache2.conf wants its
# envvars and starts every enabled site; this one starts just ours).
render_apache() {
	local mods=/usr/lib/apache2/modules m
	{
		echo "ServerRoot /etc/apache2"
		echo "ServerName localhost"
		echo "Listen $HOST:$PORT"
		echo "PidFile $OTP_RUN_DIR/apache.pid"
		echo "DefaultRuntimeDir $OTP_RUN_DIR"
		echo "Mutex file:$OTP_RUN_DIR default"
		echo "ErrorLog /dev/stderr"
		echo "LogLevel warn"
		echo "TypesConfig /etc/mime.types"
		echo "ServerTokens Prod"
		root_user && echo "User $web_user" && echo "Group $web_user"
		for m in mpm_event authz_core mime alias rewrite "$@"; do
			echo "LoadModule ${m}_module $mods/mod_$m.so"
		done
		echo "<IfModule fcgid_module>"
		echo "    FcgidIPCDir $OTP_RUN_DIR/fcgid"
		echo "    FcgidProcessTableFile $OTP_RUN_DIR/fcgid/shm"
		echo "</IfModule>"
		echo "Include $conf/$config"
	} >"$OTP_RUN_DIR/apache.conf"
	mkdir -p "$OTP_RUN_DIR/fcgid"
	root_user && chown "$web_user" "$OTP_RUN_DIR/fcgid"
	apache2 -t -f "$OTP_RUN_DIR/apache.conf" 2>"$OTP_RUN_DIR/apache-t.log" ||
		{ cat "$OTP_RUN_DIR/apache-t.log" >&2; return 1; }
}

# mod_fcgid passes no environment: the settings we were given go to an env file it names (the
# settings only: otp-fcgi refuses a key there that is none, and a sanitizer's options would
# come too late from a file)
write_env_file() {
	local f=$OTP_RUN_DIR/otp-gateway.env name value
	(umask 077 && : >"$f")
	while IFS= read -r -d '' name; do
		value=${!name}
		case $value in *'"'*) printf "%s='%s'\n" "$name" "$value" ;; *) printf '%s="%s"\n' "$name" "$value" ;; esac
	done < <(compgen -e | grep -E '^(TELEGRAM_|OTP_|RATE_LIMIT_|DEFAULT_EXPIRE|MIN_EXPIRE|MAX_EXPIRE|LOG_LEVEL$|MESSAGE_TEMPLATE$|API_KEY$|DELETER_)' |
		grep -vE '^(OTP_ENV_FILE|OTP_RUN_DIR|OTP_WWW_DIR|OTP_FCGI_BIN|OTP_ALLOW_CORE_DUMPS|OTP_TEST_.*|OTP_BUILD_DIR|OTP_FRONTEND)$' |
		tr '\n' '\0') >>"$f"
	root_user && chown "$web_user" "$f"
	export OTP_ENV_FILE=$f
}

case $server in
lighttpd)
	lighttpd -tt -f "$lighttpd_conf" >/dev/null
	lighttpd -D -f "$lighttpd_conf" &
	web=$!
	;;
nginx)
	render_nginx
	nginx -t -q -c "$OTP_RUN_DIR/nginx.conf"
	start_pool
	nginx -c "$OTP_RUN_DIR/nginx.conf" &
	web=$!
	;;
apache)
	config=apache-proxy-fcgi.conf
	render_apache proxy proxy_fcgi proxy_balancer lbmethod_byrequests slotmem_shm
	start_pool
	apache2 -f "$OTP_RUN_DIR/apache.conf" -D FOREGROUND &
	web=$!
	;;
apache-fcgid)
	config=apache-fcgid.conf
	[ -n "${OTP_ENV_FILE:-}" ] || write_env_file
	render_apache fcgid
	apache2 -f "$OTP_RUN_DIR/apache.conf" -D FOREGROUND &
	web=$!
	;;
*)
	echo "serve: unknown SERVER '$server' (lighttpd, nginx, apache, apache-fcgid)" >&2
	exit 2
	;;
esac

rc=0
wait -n "$web" "${pids[@]}" || rc=$?
echo "serve: a process of the $server front end exited (status $rc); stopping the rest" >&2
stop
exit $((rc == 0 ? 1 : rc))
