#!/usr/bin/env bash
# Checks a built rollcalld .deb: the files it installs (with modes), the
# conffile, the dependencies and the maintainer scripts. `make deb` runs it;
# tests/package_deb.rs too.
#
#   scripts/deb-check.sh target/debian/rollcalld_*.deb
set -euo pipefail

deb=${1:?usage: deb-check.sh FILE.deb}
fail=0

# path and mode of every file the package must install
expected=(
    "./usr/bin/rollcalld 755"
    "./usr/bin/rollcallctl 755"
    "./usr/lib/systemd/system/rollcalld.service 644"
    "./usr/lib/sysusers.d/rollcalld.conf 644"
    "./usr/lib/tmpfiles.d/rollcalld.conf 644"
    "./etc/rollcalld/rollcalld.toml 640"
    "./usr/share/doc/rollcalld/README.md 644"
    "./usr/share/doc/rollcalld/install.md 644"
    "./usr/share/doc/rollcalld/wiring.md 644"
    "./usr/share/doc/rollcalld/config.md 644"
    "./usr/share/doc/rollcalld/api.md 644"
    "./usr/share/doc/rollcalld/troubleshooting.md 644"
    "./usr/share/doc/rollcalld/mqtt.md 644"
    "./usr/share/doc/rollcalld/rollcallctl.md 644"
    "./usr/share/doc/rollcalld/examples/station.example.toml 644"
    "./usr/share/doc/rollcalld/examples/demo.toml 644"
    "./usr/share/doc/rollcalld/proto/station.proto 644"
    "./usr/share/doc/rollcalld/proto/rollcall.proto 644"
)

listing=$(dpkg-deb -c "$deb")
declare -A modes
while read -r perms _owner _size _date _time path _rest; do
    [[ $perms == -* ]] || continue
    m=0
    for i in 1 2 3; do
        # rwx triplets to an octal digit
        t=${perms:$((i * 3 - 2)):3}
        d=0
        [[ ${t:0:1} == r ]] && d=$((d + 4))
        [[ ${t:1:1} == w ]] && d=$((d + 2))
        [[ ${t:2:1} == x ]] && d=$((d + 1))
        m=$((m * 10 + d))
    done
    modes[$path]=$m
done <<<"$listing"

for entry in "${expected[@]}"; do
    path=${entry% *}
    want=${entry##* }
    got=${modes[$path]:-}
    if [[ -z $got ]]; then
        echo "deb-check: missing $path" >&2
        fail=1
    elif [[ $got != "$want" ]]; then
        echo "deb-check: $path has mode $got, want $want" >&2
        fail=1
    fi
done

control=$(dpkg-deb -f "$deb" Depends)
for dep in libopus0 libasound2 systemd-sysusers; do
    if ! grep -Eq "(^|, )$dep( |,|$)" <<<"$control"; then
        echo "deb-check: Depends lacks $dep: $control" >&2
        fail=1
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -e "$deb" "$tmp/DEBIAN"
if ! grep -qx "/etc/rollcalld/rollcalld.toml" "$tmp/DEBIAN/conffiles" 2>/dev/null; then
    echo "deb-check: /etc/rollcalld/rollcalld.toml is not a conffile" >&2
    fail=1
fi
sysusers_calls=$(grep -c "^ *systemd-sysusers" "$tmp/DEBIAN/postinst" 2>/dev/null || true)
if [[ $sysusers_calls != 1 ]]; then
    # 0: no user is created; 2+: the debhelper token was expanded twice.
    echo "deb-check: the postinst runs systemd-sysusers $sysusers_calls times, want once" >&2
    fail=1
fi
if grep -q "#DEBHELPER#" "$tmp/DEBIAN/postinst" "$tmp/DEBIAN/postrm" 2>/dev/null; then
    echo "deb-check: an unexpanded #DEBHELPER# token is left in a maintainer script" >&2
    fail=1
fi

if [[ $fail -eq 0 ]]; then
    echo "deb-check: $(basename "$deb"): ${#expected[@]} expected files present with their modes," \
        "conffile, Depends: $control"
fi
exit $fail
