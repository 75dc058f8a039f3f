#!/usr/bin/env bash
# Tests of the installed tree: what `cmake --install BUILD --prefix P` puts
# in P, and whether a user program builds against it the documented way.
#
#   test-install.sh tree       install BUILD into P (the ctest fixture)
#   test-install.sh layout     the files the contract promises are there
#   test-install.sh pkgconfig  cc prog.c $(pkg-config --cflags --libs gtrace), run it
#                              alone and against the installed gtraced
#   test-install.sh systemd    systemd-analyze verify/security, sysusers, tmpfiles
#
# Environment (set by tests/cmake/infra.cmake):
#   GTRACE_BUILD_DIR, GTRACE_SOURCE_DIR, GTRACE_INSTALL_PREFIX
#   GTRACE_SANITIZE         the build's sanitizers, passed on to cc
#   GTRACE_LIBDIR           CMAKE_INSTALL_LIBDIR
#   GTRACE_SYSTEMD_*, GTRACE_*TMPFILESDIR, GTRACE_SYSUSERSDIR  where those went
# Exit 77 means skipped (ctest SKIP_RETURN_CODE).
set -euo pipefail

: "${GTRACE_BUILD_DIR:?}" "${GTRACE_SOURCE_DIR:?}" "${GTRACE_INSTALL_PREFIX:?}"
P=$GTRACE_INSTALL_PREFIX
libdir=$P/${GTRACE_LIBDIR:-lib}
sysunits=$P/${GTRACE_SYSTEMD_SYSTEM_UNITDIR:-lib/systemd/system}
userunits=$P/${GTRACE_SYSTEMD_USER_UNITDIR:-lib/systemd/user}
sysusers=$P/${GTRACE_SYSUSERSDIR:-lib/sysusers.d}
tmpfiles=$P/${GTRACE_TMPFILESDIR:-lib/tmpfiles.d}

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/gtrace-install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

do_tree() {
        # The prefix is ours alone (under the build tree): start clean so a
        # file that stopped being installed is noticed.
        rm -rf "$P"
        cmake --install "$GTRACE_BUILD_DIR" --prefix "$P" >"$work/install.log" ||
                { cat "$work/install.log"; fail "cmake --install failed"; }
        echo "installed into $P"
}

do_layout() {
        local f missing=0
        for f in "$P/include/gtrace/gtrace.h" "$libdir/pkgconfig/gtrace.pc" \
                "$libdir/libgtrace.a" "$libdir/libgtrace.so" "$libdir/libgtrace.so.0" \
                "$sysunits/gtraced.service" "$sysunits/gtraced.socket" \
                "$userunits/gtraced.service" "$userunits/gtraced.socket" \
                "$sysusers/gtraced.conf" "$tmpfiles/gtraced.conf"; do
                if [ -e "$f" ]; then
                        echo "ok: ${f#"$P"/}"
                else
                        echo "missing: ${f#"$P"/}" >&2
                        missing=1
                fi
        done
        for f in gtraced gtracectl; do
                if [ -x "$P/bin/$f" ]; then
                        "$P/bin/$f" --version >"$work/version.out" 2>&1 ||
                                fail "bin/$f --version exited $?: $(cat "$work/version.out")"
                        echo "ok: bin/$f ($(head -n 1 "$work/version.out"))"
                else
                        echo "missing: bin/$f" >&2
                        missing=1
                fi
        done
        # Only the runtime's symbols are public; nothing of the daemon's
        # dependencies may leak into what users link.
        if objdump -p "$libdir/libgtrace.so" | grep -E 'NEEDED +lib(uv|jansson|systemd)' >&2; then
                fail "libgtrace.so links a daemon-only library"
        fi
        [ "$missing" -eq 0 ] || fail "files missing from the installed tree"
}

do_pkgconfig() {
        local cflags libs san=() dump
        export PKG_CONFIG_PATH=$libdir/pkgconfig
        pkg-config --exists gtrace || fail "pkg-config does not find gtrace in $PKG_CONFIG_PATH"
        [ "$(pkg-config --modversion gtrace)" = "$(sed -n 's/^#define GTRACE_VERSION_STRING "\(.*\)"/\1/p' \
                "$P/include/gtrace/gtrace.h")" ] || fail "gtrace.pc version differs from gtrace.h"
        cflags=$(pkg-config --cflags gtrace)
        libs=$(pkg-config --libs gtrace)
        echo "cflags: $cflags"
        echo "libs:   $libs"
        if [ -n "${GTRACE_SANITIZE:-}" ]; then
                san=("-fsanitize=$GTRACE_SANITIZE")
        fi
        local src=$GTRACE_SOURCE_DIR/tests/integration/test-install-prog.c
        # shellcheck disable=SC2086 # pkg-config output is a word list
        cc -std=c11 -Wall -Wextra -Werror "${san[@]}" "$src" -o "$work/prog-shared" $cflags $libs ||
                fail "building against the installed tree (shared) failed"
        # shellcheck disable=SC2086
        cc -std=c11 -Wall -Wextra -Werror "${san[@]}" "$src" -o "$work/prog-static" $cflags \
                "$libdir/libgtrace.a" $(pkg-config --static --libs-only-other gtrace) ||
                fail "building against the installed tree (static) failed"

        for kind in shared static; do
                mkdir -p "$work/dumps-$kind"
                dump=$(cd "$work" && LD_LIBRARY_PATH=$libdir GTRACE_NO_DAEMON=1 \
                        GTRACE_DUMP_DIR="$work/dumps-$kind" "./prog-$kind") ||
                        fail "prog-$kind exited $?"
                [ -s "$dump" ] || fail "prog-$kind: no dump at '$dump'"
                case "$dump" in "$work/dumps-$kind"/*) ;; *) fail "dump outside GTRACE_DUMP_DIR: $dump" ;; esac
                [ "$(head -c 8 "$dump" | od -An -c | tr -d ' ')" = 'GTRACE\r\n' ] ||
                        fail "prog-$kind: $dump does not start with the dump magic"
                echo "ok: prog-$kind wrote $(stat -c %s "$dump") bytes to $dump"
                if [ -x "$P/bin/gtracectl" ]; then
                        "$P/bin/gtracectl" validate "$dump" || fail "gtracectl validate $dump"
                        echo "ok: gtracectl validate"
                fi
        done
        if [ "$(ldd "$work/prog-shared" | grep -c libgtrace)" -ne 1 ] ||
                ldd "$work/prog-static" | grep -q libgtrace; then
                fail "shared/static programs link the wrong library"
        fi

        # The installed pieces together: the program records through the
        # installed gtraced, which writes the dump into its --dump-dir.
        local sock=$work/gtraced.sock dpid rc=0 start
        mkdir "$work/daemon-dumps"
        "$P/bin/gtraced" --socket "$sock" --dump-dir "$work/daemon-dumps" >"$work/gtraced.log" 2>&1 &
        dpid=$!
        start=$SECONDS
        until [ -S "$sock" ]; do
                kill -0 "$dpid" 2>/dev/null || { cat "$work/gtraced.log" >&2; fail "gtraced exited at start"; }
                ((SECONDS - start < 10)) || { kill "$dpid"; fail "gtraced did not create $sock within 10 s"; }
                sleep 0.02
        done
        dump=$(cd "$work" && LD_LIBRARY_PATH=$libdir GTRACED_SOCKET=$sock ./prog-shared daemon) || rc=$?
        kill -TERM "$dpid"
        wait "$dpid" || { cat "$work/gtraced.log" >&2; fail "gtraced exited $? on SIGTERM"; }
        [ "$rc" -eq 0 ] || { cat "$work/gtraced.log" >&2; fail "prog-shared daemon exited $rc"; }
        case "$dump" in "$work/daemon-dumps"/*.gtrace) ;; *) fail "daemon dump at '$dump', not in --dump-dir" ;; esac
        "$P/bin/gtracectl" validate "$dump" || fail "gtracectl validate $dump"
        echo "ok: prog-shared recorded through the installed gtraced: $dump"
}

do_systemd() {
        if ! command -v systemd-analyze >/dev/null; then
                echo "SKIP: systemd-analyze is not installed (Debian package: systemd)"
                exit 77
        fi
        local sys_service=$sysunits/gtraced.service user_service=$userunits/gtraced.service
        local units=$work/units
        mkdir -p "$units/system" "$units/user"
        cp "$sysunits/gtraced.service" "$sysunits/gtraced.socket" "$units/system/"
        cp "$userunits/gtraced.service" "$userunits/gtraced.socket" "$units/user/"

        # verify also checks that ExecStart= names an executable: the
        # installed gtraced.
        [ -x "$P/bin/gtraced" ] || fail "bin/gtraced is not installed"

        grep -q "^ExecStart=[^ ]*/gtraced --socket /run/gtraced/gtraced.sock --dump-dir /var/lib/gtraced/dumps$" \
                "$units/system/gtraced.service" || fail "system ExecStart does not match the socket unit"
        grep -q '^ListenStream=/run/gtraced/gtraced.sock$' "$units/system/gtraced.socket" ||
                fail "system socket is not at the contract's path"
        grep -q '^ListenStream=%t/gtraced/gtraced.sock$' "$units/user/gtraced.socket" ||
                fail "user socket is not at \$XDG_RUNTIME_DIR/gtraced/gtraced.sock"

        # systemd-analyze verify reports unknown keys and bad values as
        # warnings with exit 0: any output at all fails the test.
        local out=$work/verify.out rc=0
        (cd "$units/system" && systemd-analyze verify --man=no gtraced.socket gtraced.service) >"$out" 2>&1 || rc=$?
        if [ "$rc" -ne 0 ] || [ -s "$out" ]; then
                cat "$out" >&2
                fail "systemd-analyze verify (system units) exit $rc"
        fi
        echo "ok: systemd-analyze verify, system units"
        mkdir -m 0700 "$work/xdg-runtime" "$work/home"
        rc=0
        (cd "$units/user" && XDG_RUNTIME_DIR=$work/xdg-runtime HOME=$work/home \
                systemd-analyze verify --man=no --user gtraced.socket gtraced.service) >"$out" 2>&1 || rc=$?
        if [ "$rc" -ne 0 ] || [ -s "$out" ]; then
                cat "$out" >&2
                fail "systemd-analyze verify --user (user units) exit $rc"
        fi
        echo "ok: systemd-analyze verify, user units"

        # The hardening, scored the way systemd scores it.  0.0 is a fully
        # locked-down unit, 10 an unprotected one (--threshold counts in
        # tenths); docs/systemd.md says what keeps gtraced above 0.
        rc=0
        systemd-analyze security --offline=true --threshold=20 --no-pager \
                "$units/system/gtraced.service" >"$out" 2>&1 || rc=$?
        grep 'Overall exposure level' "$out" || true
        if [ "$rc" -ne 0 ]; then
                cat "$out" >&2
                fail "systemd-analyze security: exposure above 2.0"
        fi

        # sysusers.d and tmpfiles.d snippets, applied to a scratch root.
        local root=$work/root
        mkdir -p "$root/etc"
        systemd-sysusers --root="$root" "$sysusers/gtraced.conf" >"$out" 2>&1 ||
                { cat "$out" >&2; fail "systemd-sysusers rejected gtraced.conf"; }
        grep -q '^gtraced:x:[0-9]*:[0-9]*:gtrace flight-recorder daemon:/var/lib/gtraced:' "$root/etc/passwd" ||
                fail "sysusers.d did not create the gtraced user: $(cat "$root/etc/passwd")"
        grep -q '^gtraced:x:' "$root/etc/group" || fail "sysusers.d did not create the gtraced group"
        echo "ok: sysusers.d creates user and group gtraced"
        systemd-tmpfiles --root="$root" --create "$tmpfiles/gtraced.conf" >"$out" 2>&1 ||
                { cat "$out" >&2; fail "systemd-tmpfiles --create rejected gtraced.conf"; }
        local uid
        uid=$(awk -F: '$1 == "gtraced" { print $3 }' "$root/etc/passwd")
        [ "$(stat -c %a:%u "$root/var/lib/gtraced/dumps")" = "750:$uid" ] ||
                fail "dump dir: want mode 750 owned by gtraced ($uid), got $(stat -c %a:%u "$root/var/lib/gtraced/dumps")"
        echo "ok: tmpfiles.d creates /var/lib/gtraced/dumps, mode 750, owner gtraced"
        # Retention: a dump older than the configured age goes, a new one stays.
        local age
        age=$(awk '$2 == "/var/lib/gtraced/dumps" { print $6 }' "$tmpfiles/gtraced.conf")
        if [ -n "$age" ] && [ "$age" != - ]; then
                touch -m -d '400 days ago' "$root/var/lib/gtraced/dumps/old.gtrace"
                touch "$root/var/lib/gtraced/dumps/new.gtrace"
                systemd-tmpfiles --root="$root" --clean "$tmpfiles/gtraced.conf" >"$out" 2>&1 ||
                        { cat "$out" >&2; fail "systemd-tmpfiles --clean"; }
                [ ! -e "$root/var/lib/gtraced/dumps/old.gtrace" ] || fail "old dump survived --clean (age $age)"
                [ -e "$root/var/lib/gtraced/dumps/new.gtrace" ] || fail "new dump removed by --clean"
                echo "ok: tmpfiles.d --clean removes dumps older than $age"
        fi

        # The user snippet: %S is $XDG_CONFIG_HOME on systemd 252 and
        # $XDG_STATE_HOME on later versions, the same base the user unit's %S
        # and StateDirectory= use, so either is right.
        local usertmp=$P/${GTRACE_USER_TMPFILESDIR:-share/user-tmpfiles.d}/gtraced.conf
        [ -e "$usertmp" ] || fail "user-tmpfiles.d/gtraced.conf is not installed"
        XDG_CONFIG_HOME=$work/home/config XDG_STATE_HOME=$work/home/state HOME=$work/home \
                XDG_RUNTIME_DIR=$work/xdg-runtime systemd-tmpfiles --user --create "$usertmp" >"$out" 2>&1 ||
                { cat "$out" >&2; fail "systemd-tmpfiles --user --create rejected the user snippet"; }
        if [ "$(stat -c %a "$work/home/state/gtraced/dumps" 2>/dev/null ||
                stat -c %a "$work/home/config/gtraced/dumps" 2>/dev/null)" != 700 ]; then
                fail "user tmpfiles.d did not create %S/gtraced/dumps with mode 700"
        fi
        echo "ok: user-tmpfiles.d creates %S/gtraced/dumps, mode 700"
}

case "${1:-}" in
tree) do_tree ;;
layout) do_layout ;;
pkgconfig) do_pkgconfig ;;
systemd) do_systemd ;;
*)
        echo "usage: $0 tree|layout|pkgconfig|systemd" >&2
        exit 2
        ;;
esac
