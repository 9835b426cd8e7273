# otp-gateway — a two-stage image: build with Debian's -dev packages, run on debian:12-slim with
# only the runtime libraries, lighttpd, and the docs assets. Not root at run time.
#
#   docker build -t otp-gateway .
#   docker run --rm -p 55155:55155 --tmpfs /run/otp-gateway -e TELEGRAM_BOT_TOKEN=... otp-gateway
#
# The database lives on tmpfs (/run/otp-gateway); without --tmpfs it stays in the container's
# writable layer and a warning says so at start. conf/docker-compose.yml does the same.

FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libfcgi-dev libjansson-dev libcurl4-openssl-dev \
      libsqlite3-dev libhiredis-dev nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# the Makefile's dependency check needs root and apt: skip it here, the packages are above
RUN make -o deps BUILD=/out CFLAGS="-O2 -g0" all \
 && if [ -x www/build-assets.sh ]; then www/build-assets.sh; fi

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      lighttpd libfcgi0ldbl libjansson4 libcurl4 libsqlite3-0 libhiredis0.14 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 999 otp \
 && useradd --system --uid 999 --gid 999 --no-create-home --shell /usr/sbin/nologin otp \
 && install -d -o otp -g otp -m 0750 /run/otp-gateway
COPY --from=build /out/otp-fcgi /out/otp-deleter /usr/local/bin/
COPY --from=build /src/www /usr/share/otp-gateway/www
COPY lighttpd.conf /etc/otp-gateway/lighttpd.conf
COPY conf/docker-entrypoint.sh /usr/local/bin/otp-gateway
ENV HOST=0.0.0.0 PORT=55155 \
    OTP_FCGI_BIN=/usr/local/bin/otp-fcgi OTP_DELETER_BIN=/usr/local/bin/otp-deleter \
    OTP_WWW_DIR=/usr/share/otp-gateway/www OTP_RUN_DIR=/run/otp-gateway \
    OTP_DB_PATH=/run/otp-gateway/pending.db OTP_LIGHTTPD_CONF=/etc/otp-gateway/lighttpd.conf
USER otp
EXPOSE 55155
# no curl in the image: bash's /dev/tcp asks /health
HEALTHCHECK --interval=30s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/$PORT && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '\"status\":\"ok\"' <&3"]
ENTRYPOINT ["/usr/local/bin/otp-gateway"]
