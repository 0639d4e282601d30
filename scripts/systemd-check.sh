#!/usr/bin/env bash
# Offline checks of the systemd files; needs no running systemd (PID 1).
#
#   scripts/systemd-check.sh [ROLLCALLD_BINARY]
#
# 1. `systemd-analyze verify` of systemd/rollcalld.service inside a throw-away
#    root holding the distribution's units and /usr/bin/rollcalld (the given
#    binary, or a stub when none is given: verify only checks it is executable).
#    Any output at all (unknown key, bad value, missing command) is a failure.
# 2. `systemd-analyze security --offline=true`: prints the line
#    `exposure: N.N (limit 2.0)` and fails above the limit.
# 3. systemd-sysusers and systemd-tmpfiles run on the snippets in that root:
#    the user exists, is in dialout and audio, and owns its directories.
#
# ROLLCALLD_UNIT checks another unit file (the tests use it to show a bad
# unit fails); ROLLCALLD_EXPOSURE_LIMIT changes the limit.
#
# Exit 0 when all pass; 1 on a failed check; 3 when the systemd tools are
# missing (install the `systemd` package).
set -euo pipefail

LIMIT=${ROLLCALLD_EXPOSURE_LIMIT:-2.0}
here=$(cd "$(dirname "$0")/.." && pwd)
unit=${ROLLCALLD_UNIT:-"$here/systemd/rollcalld.service"}
bin=${1:-}

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
    if ! command -v "$tool" >/dev/null; then
        echo "systemd-check: $tool not found; install the systemd package" >&2
        exit 3
    fi
done

root=$(mktemp -d /tmp/rollcalld-systemd-check.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd" "$root/etc/systemd/system" \
    "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
# verify resolves After=/WantedBy= targets, so the root needs the stock units.
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$unit" "$root/usr/lib/systemd/system/rollcalld.service"
if [[ -n "$bin" ]]; then
    cp "$bin" "$root/usr/bin/rollcalld"
    echo "verify: with binary $bin"
else
    printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/rollcalld"
    echo "verify: with a stub /usr/bin/rollcalld (pass a binary to use the real one)"
fi
chmod 0755 "$root/usr/bin/rollcalld"

fail=0
out=$(systemd-analyze verify --root="$root" --man=no rollcalld.service 2>&1) || fail=1
if [[ -n "$out" || $fail -ne 0 ]]; then
    echo "verify: FAILED" >&2
    echo "$out" >&2
    fail=1
else
    echo "verify: clean"
fi

report=$(systemd-analyze security --offline=true "$unit" 2>&1 || true)
exposure=$(sed -n 's/.*Overall exposure level for rollcalld.service: \([0-9.]*\).*/\1/p' <<<"$report")
if [[ -z "$exposure" ]]; then
    echo "security: no exposure figure in the report:" >&2
    echo "$report" >&2
    fail=1
else
    echo "exposure: $exposure (limit $LIMIT)"
    if ! awk -v e="$exposure" -v l="$LIMIT" 'BEGIN { exit !(e <= l) }'; then
        echo "security: exposure $exposure is above $LIMIT; the findings:" >&2
        grep '✗' <<<"$report" >&2 || true
        fail=1
    fi
fi

cp "$here/systemd/rollcalld.sysusers" "$root/usr/lib/sysusers.d/rollcalld.conf"
cp "$here/systemd/rollcalld.tmpfile" "$root/usr/lib/tmpfiles.d/rollcalld.conf"
mkdir -p "$root/etc"
if systemd-sysusers --root="$root" rollcalld.conf >/dev/null 2>&1 \
    && systemd-tmpfiles --root="$root" --create rollcalld.conf >/dev/null 2>&1; then
    uid=$(awk -F: '$1 == "rollcalld" { print $3 }' "$root/etc/passwd")
    ok=1
    for g in dialout audio; do
        grep -Eq "^$g:[^:]*:[0-9]+:(.*,)?rollcalld(,|$)" "$root/etc/group" || ok=0
    done
    for d in var/lib/rollcalld var/lib/rollcalld/recordings var/log/rollcalld; do
        [[ "$(stat -c %u "$root/$d" 2>/dev/null)" == "$uid" ]] || ok=0
    done
    if [[ -n "$uid" && $ok -eq 1 ]]; then
        echo "sysusers/tmpfiles: user rollcalld (uid $uid in the test root) in dialout and audio, owns its directories"
    else
        echo "sysusers/tmpfiles: FAILED: user, groups or directory owners are wrong" >&2
        fail=1
    fi
else
    echo "sysusers/tmpfiles: FAILED to apply the snippets" >&2
    fail=1
fi

exit $fail
