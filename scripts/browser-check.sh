#!/usr/bin/env bash
# Browser check of the report's HTML: builds the demo report (scripts/demo.sh
# on the tiny synthetic bundle in testdata/) into a temporary directory and
# loads index.html and the first ranked feature's page in headless Chromium
# (Debian's package `chromium`). It fails when
#   - a page logs anything to the console (an uncaught error, a failed load),
#   - the sorting script did not run (it marks every column head "sort"),
#   - the feature page does not show its examples (highlighted firing tokens
#     under "Top activating contexts") or a link of the index points nowhere.
# It also loads the demo's layer-set report (report --layers): no console
# message, every link there. It saves screenshots of the feature page and of
# the layer set's page in the temporary directory; with --save-screenshot
# also as docs/img/dashboard.png and docs/img/layers.png (the README's).
#
#   scripts/browser-check.sh [--save-screenshot] [bin/ctxdep]
#
# Chromium: apt-get install chromium (the script installs it when run as
# root and it is missing). It needs no network: the pages fetch nothing.
set -euo pipefail
save=
if [ "${1:-}" = --save-screenshot ]; then
  save=docs/img/dashboard.png
  shift
fi
bin=${1:-bin/ctxdep}
cd "$(dirname "$0")/.."

chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chrome" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium" >&2
    apt-get install -y --no-install-recommends chromium >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
    chrome=$(command -v chromium)
  else
    echo "browser-check: no chromium; install it (Debian: apt-get install chromium)" >&2
    exit 1
  fi
fi
if [ ! -x "$bin" ]; then
  make build >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== demo report into $work (log: $work/demo.log)" >&2
if ! DEMO_OUT="$work" scripts/demo.sh "$bin" >"$work/demo.log" 2>&1; then
  cat "$work/demo.log" >&2
  echo "browser-check: the demo failed" >&2
  exit 1
fi
report=$work/report
feature=$(grep -o 'href="features/[0-9]*\.html"' "$report/index.html" | head -n 1 | sed 's/^href="//; s/"$//')
if [ -z "$feature" ]; then
  echo "browser-check: index.html links no feature page" >&2
  exit 1
fi

fail=0
# load DIR PAGE NAME: dumps the DOM of DIR/PAGE after the scripts ran to
# $work/NAME.dom, the browser's log to $work/NAME.log; fails on any console
# message.
load() {
  local dir=$1 page=$2 name=$3
  timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile" \
    --enable-logging=stderr --v=0 --virtual-time-budget=3000 --dump-dom "file://$dir/$page" \
    >"$work/$name.dom" 2>"$work/$name.log" || { echo "FAIL $page: chromium exited $?" >&2; fail=1; }
  if grep -E 'CONSOLE|Uncaught' "$work/$name.log" >&2; then
    echo "FAIL $page: console messages (above)" >&2
    fail=1
  fi
}
# sorted NAME: the sorting script ran on the page (it marks every column
# head "sort").
sorted() {
  if ! grep -q '<th class="sort"' "$work/$1.dom"; then
    echo "FAIL $1: the sorting script did not run" >&2
    fail=1
  fi
}
# links DIR PAGE: every local link of DIR/PAGE resolves.
links() {
  for l in $(grep -o 'href="[^"#:]*"' "$1/$2" | sed 's/^href="//; s/"$//' | sort -u); do
    [ -e "$1/$l" ] || { echo "FAIL $2 links $l, which is not there" >&2; fail=1; }
  done
}
load "$report" index.html index
sorted index
load "$report" "$feature" feature
sorted feature
hits=$(grep -o 'class="tok hit"' "$work/feature.dom" | wc -l)
if ! grep -q 'Top activating contexts' "$work/feature.dom" || [ "$hits" -lt 1 ]; then
  echo "FAIL $feature: no examples shown ($hits highlighted firing tokens)" >&2
  fail=1
fi
# The demo's layer set report (report --layers): no console message, and
# every local link (each layer's report) resolves.
set_report=$work/report-set
load "$set_report" index.html set
if ! grep -q 'layer-01/index.html' "$work/set.dom"; then
  echo "FAIL report-set/index.html: no link to layer 1's report" >&2
  fail=1
fi
links "$set_report" index.html
links "$report" index.html

# screenshot URL FILE HEIGHT: a 1000-pixel-wide screenshot of URL.
screenshot() {
  timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile" \
    --hide-scrollbars --window-size=1000,"$3" --virtual-time-budget=3000 --screenshot="$2" \
    "$1" >/dev/null 2>&1 || { echo "FAIL screenshot of $1" >&2; fail=1; }
}
shot=$work/dashboard.png setshot=$work/layers.png
screenshot "file://$report/$feature" "$shot" 1000
screenshot "file://$set_report/index.html" "$setshot" 1400
if [ -n "$save" ] && [ -s "$shot" ]; then
  mkdir -p "$(dirname "$save")"
  cp "$shot" "$save"
  cp "$setshot" "$(dirname "$save")/layers.png"
  echo "saved $save and $(dirname "$save")/layers.png" >&2
fi
if [ "$fail" != 0 ]; then
  trap - EXIT
  echo "browser-check: FAILED; the report and the browser's logs are in $work" >&2
  exit 1
fi
echo "browser-check: ok (index.html, $feature and the layer set's index.html load without console messages; $hits firing tokens highlighted on $feature)"
