#!/usr/bin/env bash
# www/build-assets.sh — installs the npm packages of www/package.json (exactly the versions of
# package-lock.json) and copies the files that /docs and /redoc load into www/vendor/, which
# lighttpd serves. Both folders are made here and ignored by git (www/.gitignore).
#
#   www/build-assets.sh           install when package.json or the lock changed, copy when
#                                 the install or this script changed
#   www/build-assets.sh --force   install and copy whatever the state
#
# The same install brings the test tools: @redocly/cli (lints openapi.json) and playwright-core
# (drives Debian's chromium in tests/browser/). Install scripts are not run: none is needed, and
# one (swagger-ui-dist's dependency @scarf/scarf) would report the install over the network.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "build-assets: node or npm not found (.ci/install-deps installs them)" >&2
	exit 1
fi
# @redocly/cli 2.x wants node 20.19 or later (redoc 3 would want 22: we keep redoc 2)
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
	process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
	echo "build-assets: node $(node --version) is too old: 20.19 or later is needed" >&2
	exit 1
fi

# npm ci keeps node_modules/.package-lock.json: newer than both files means it is up to date
stamp=node_modules/.package-lock.json
if [ "${1:-}" = "--force" ] || [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] ||
   [ package.json -nt "$stamp" ]; then
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch "$stamp"
fi

if [ "${1:-}" != "--force" ] && [ vendor/VERSIONS -nt "$stamp" ] &&
   [ vendor/VERSIONS -nt build-assets.sh ]; then
	echo "build-assets: www/vendor/ is up to date: $(cat vendor/VERSIONS)"
	exit 0
fi

# Only what the pages load; built aside and swapped in, so a failed copy leaves the old one.
rm -rf vendor.new
mkdir -p vendor.new/swagger-ui vendor.new/redoc
for f in swagger-ui-bundle.js swagger-ui.css favicon-16x16.png favicon-32x32.png LICENSE; do
	cp node_modules/swagger-ui-dist/$f vendor.new/swagger-ui/
done
cp node_modules/redoc/bundles/redoc.standalone.js \
   node_modules/redoc/bundles/redoc.standalone.js.LICENSE.txt node_modules/redoc/LICENSE \
   vendor.new/redoc/
# ReDoc 2 shows Redocly's logo in its sidebar from their CDN, with no option to turn it off: it
# becomes an empty inline image, as the pages load nothing from elsewhere.
logo=https://cdn.redoc.ly/redoc/logo-mini.svg
n=$(grep -o "$logo" vendor.new/redoc/redoc.standalone.js | wc -l)
if [ "$n" -ne 1 ]; then
	echo "build-assets: expected $logo once in redoc.standalone.js, found it $n times" >&2
	exit 1
fi
sed -i "s|$logo|data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E|" \
	vendor.new/redoc/redoc.standalone.js

node -p "['swagger-ui-dist', 'redoc'].map((p) =>
	p + '@' + require('./node_modules/' + p + '/package.json').version).join(' ')" \
	> vendor.new/VERSIONS
rm -rf vendor
mv vendor.new vendor
echo "build-assets: www/vendor/ holds $(cat vendor/VERSIONS)"
