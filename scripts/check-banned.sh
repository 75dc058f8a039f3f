#!/usr/bin/env bash
# House style (shared STYLE.md): no sprintf, vsprintf, strcpy, stpcpy, strcat
# or gets anywhere in our C sources.  Each has a bounded replacement
# (snprintf, memcpy with a checked length ...).
# Run by ctest as test-style-banned-functions; prints every offending line.
set -euo pipefail
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root"

dirs=()
for d in protocol runtime flightrec daemon client tests examples bench tools; do
        [ -d "$d" ] && dirs+=("$d")
done
pattern='\b(sprintf|vsprintf|strcpy|stpcpy|strcat|gets)[[:space:]]*\('
if grep -rnE "$pattern" --include='*.c' --include='*.h' "${dirs[@]}"; then
        echo "FAIL: banned function(s) above (see STYLE.md)" >&2
        exit 1
fi
echo "ok: no banned functions in ${dirs[*]}"
