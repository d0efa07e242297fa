#!/usr/bin/env bash
# Screenshots of the built site, as a reader sees it: the landing page, an API page with math
# and the results page (its tables). Needs Chromium (Debian: apt-get install chromium) and a
# build (sphinx-build -W --keep-going -b html docs docs/_build/html).
#   bash docs/screenshots.sh [OUT_DIR]      (default docs/_build/screenshots)
set -euo pipefail
cd "$(dirname "$0")"
html="$PWD/_build/html"
out="${1:-_build/screenshots}"
[[ -f "$html/index.html" ]] || { echo "error: no build in $html; run sphinx-build first" >&2; exit 2; }
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[[ -n "$browser" ]] || { echo "error: Chromium not found (apt-get install chromium)" >&2; exit 2; }
mkdir -p "$out"

shot() {  # shot NAME PAGE[#ANCHOR] WIDTH HEIGHT
    # --virtual-time-budget lets MathJax typeset before the capture
    profile="$(mktemp -d)"  # one profile per run: a second run must not find the first's lock
    "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
        --window-size="$3,$4" --virtual-time-budget=15000 \
        --screenshot="$out/$1.png" "file://$html/$2" 2>/dev/null
    rm -rf "$profile"
    echo "$out/$1.png"
}
shot landing index.html 1600 1100
shot api_math api/pyg_spherical.distributions.von_mises_fisher.html 1600 1600
shot results results.html 1600 2400
