# otp-gateway — the image: the API docs' assets built in a node stage, the programs built with
# Debian's -dev packages and installed with `make install`, then a runtime stage on debian:12-slim
# with only the runtime libraries, lighttpd and the installed tree: no compiler, no package cache
# or lists, no docs or man pages. Not root at run time.
#
#   docker build -t otp-gateway .
#   printf '%s\n' "$TOKEN" > bot-token        # the token as a file: a secret, never an -e
#   docker run --rm -p 55155:55155 --tmpfs /run/otp-gateway:uid=999,gid=999,mode=0750 \
#       -v "$PWD/bot-token:/run/secrets/telegram_bot_token:ro" -e API_KEY=... \
#       --stop-timeout 120 otp-gateway
#   (podman: --tmpfs /run/otp-gateway:U, --secret; build with --format docker to keep HEALTHCHECK)
#
# The database lives on the tmpfs (/run/otp-gateway), which must be writable by the user otp
# (uid 999): the entrypoint stops with a message saying so when it is not. conf/docker-compose.yml
# does the same. When any process dies, the container exits non-zero (a restart policy restarts it).
# A stop (SIGTERM) stops the web server first, then otp-deleter deletes what is pending at its
# time: the stop timeout must cover it (docs/container.md).

# The base of the build and runtime stages (a test builds from a local Debian 12 image).
ARG BASE_IMAGE=debian:12-slim
# The docs' assets need node >= 20.19: Debian 12's nodejs is 18. They are built in this image,
# unless the build context already holds them (www/vendor/ from `make docs-assets`).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS docs
WORKDIR /src/www
COPY www/ ./
RUN if [ ! -f vendor/VERSIONS ]; then ./build-assets.sh; fi && test -f vendor/VERSIONS

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libfcgi-dev libjansson-dev libcurl4-openssl-dev \
      libsqlite3-dev libhiredis-dev libssl-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# the Makefile's dependency check needs root and apt: skip it here, the packages are above;
# www/vendor/ comes from the docs stage
RUN rm -rf www/vendor \
 && make -o deps BUILD=/build CFLAGS="-O2 -g0" all \
 && make -o deps BUILD=/build PREFIX=/usr/local DESTDIR=/out install \
 && rm -rf /out/usr/local/share/man

FROM ${BASE_IMAGE}
# What the packages below would add under /usr/share/doc, man, info and locale is never unpacked
# (debian:12-slim does the same for its own packages); apt's cache and lists go in the same layer,
# or they stay in the image however later layers delete them.
RUN printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
      'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/lintian/*' \
      > /etc/dpkg/dpkg.cfg.d/otp-gateway-nodoc \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      lighttpd libfcgi0ldbl libjansson4 libcurl4 libsqlite3-0 libhiredis0.14 ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/lib/dpkg/*-old \
      /var/log/apt /var/log/dpkg.log /var/log/alternatives.log /var/www/html \
 && groupadd --system --gid 999 otp \
 && useradd --system --uid 999 --gid 999 --no-create-home --shell /usr/sbin/nologin otp \
 && install -d -o otp -g otp -m 0750 /run/otp-gateway
COPY --from=build /out/usr/local/ /usr/local/
COPY --from=docs /src/www/vendor/ /usr/local/share/otp-gateway/www/vendor/
RUN ln -s /usr/local/share/otp-gateway/conf/docker-entrypoint.sh /usr/local/bin/otp-gateway
ENV HOST=0.0.0.0 PORT=55155 \
    OTP_FCGI_BIN=/usr/local/bin/otp-fcgi OTP_DELETER_BIN=/usr/local/bin/otp-deleter \
    OTP_WWW_DIR=/usr/local/share/otp-gateway/www OTP_RUN_DIR=/run/otp-gateway \
    OTP_DB_PATH=/run/otp-gateway/pending.db \
    OTP_LIGHTTPD_CONF=/usr/local/share/otp-gateway/lighttpd.conf
USER otp
EXPOSE 55155
# The entrypoint takes SIGTERM: lighttpd stops first (sends under way are answered and recorded),
# then otp-deleter drains. Give the stop time for both (docs/container.md): docker run
# --stop-timeout 120, Compose stop_grace_period: 120s, Kubernetes terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
# no curl in the image: bash's /dev/tcp asks /health
HEALTHCHECK --interval=30s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/$PORT && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '\"status\":\"ok\"' <&3"]
ENTRYPOINT ["/usr/local/bin/otp-gateway"]
