#!/usr/bin/env bash
# Build the browser UI: runtimed/web/frontend (npm sources) -> runtimed/web/static (committed bundle).
# Needs Node.js >= 18 and npm; users of runtimed never need Node (the bundle is committed).
#   scripts/build-web.sh            # npm ci + esbuild (minified)
#   SKIP_NPM_CI=1 scripts/build-web.sh   # reuse the installed node_modules
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRONTEND="$ROOT/runtimed/web/frontend"
STATIC="$ROOT/runtimed/web/static"

cd "$FRONTEND"
if [[ -z "${SKIP_NPM_CI:-}" ]]; then
  npm ci --no-audit --no-fund
fi

mkdir -p "$STATIC"
rm -f "$STATIC"/app.js "$STATIC"/app.css "$STATIC"/app.js.LEGAL.txt "$STATIC"/app.css.LEGAL.txt
rm -rf "$STATIC"/fonts
# KaTeX's fonts are served from /static/fonts (the page CSP allows only same-origin fonts); every browser
# the page supports reads woff2, so the woff/ttf fallbacks are left out of the bundle.
npx --no-install esbuild src/main.js \
  --bundle --minify --format=esm --target=es2020 \
  --loader:.woff2=file --loader:.woff=empty --loader:.ttf=empty --asset-names=fonts/[name]-[hash] \
  --legal-comments=external --charset=utf8 \
  --outdir="$STATIC" --entry-names=app

# Widgets (docs/widgets.md): @jupyter-widgets/html-manager and the anywidget loader run inside the sandboxed
# output frames, as a separate classic script fetched only by frames that show a widget (static/widgets/).
rm -rf "$STATIC"/widgets
npx --no-install esbuild src/widgets-frame.js \
  --bundle --minify --format=iife --target=es2020 \
  --loader:.woff2=file --loader:.woff=empty --loader:.ttf=empty --loader:.eot=empty --loader:.svg=empty \
  --asset-names=fonts/[name]-[hash] --define:process.env.NODE_ENV='"production"' --define:global=globalThis \
  --legal-comments=external --charset=utf8 \
  --outdir="$STATIC/widgets" --entry-names=widgets

# index.html references the bundle with a content hash, so browsers never run a stale bundle.
VERSION="$(cat "$STATIC/app.js" "$STATIC/app.css" | sha256sum | cut -c1-12)"
sed "s/__VERSION__/$VERSION/g" src/index.html > "$STATIC/index.html"
cp src/frame.html "$STATIC/frame.html"  # the sandboxed outputs' document (served with its own CSP)

ls -l "$STATIC"
echo "built runtimed/web/static (version $VERSION)"
