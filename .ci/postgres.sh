#!/usr/bin/env bash
# Sourced by .ci/run (or by hand: `source .ci/postgres.sh && make test`): a throwaway
# PostgreSQL server on a free port of 127.0.0.1 for the shared-study tests
# (tests/tuning/test_postgres.py). Exports C3TL_TEST_POSTGRES_URL and stops the server
# on exit. Without the binaries (and no way to install them) it exports nothing and the
# tests skip with that reason.

c3tl_pg_bindir() {
    local found
    found="$(command -v initdb 2>/dev/null || true)"
    if [[ -n "$found" ]]; then dirname "$(readlink -f "$found")"; return; fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

c3tl_pg_start() {
    local bindir port
    bindir="$(c3tl_pg_bindir)"
    if [[ -z "$bindir" ]] && command -v apt-get >/dev/null 2>&1; then
        echo "postgres: installing Debian's postgresql package" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            postgresql >/dev/null; } || echo "postgres: apt-get install failed" >&2
        bindir="$(c3tl_pg_bindir)"
    fi
    if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
        echo "postgres: no initdb found; the PostgreSQL tests will be skipped" >&2
        return 0
    fi
    # postgres refuses to run as root: run it as the package's user, or a throwaway one
    C3TL_PG_USER="$(id -un)"
    if [[ "$(id -u)" == 0 ]]; then
        C3TL_PG_USER=postgres
        if ! id -u postgres >/dev/null 2>&1; then
            C3TL_PG_USER=c3tl-pg
            id -u c3tl-pg >/dev/null 2>&1 || useradd --system --no-create-home c3tl-pg \
                || { echo "postgres: cannot create a user to run the server" >&2; return 0; }
        fi
    fi
    C3TL_PG_DIR="$(mktemp -d /tmp/c3tl-pg.XXXXXX)"
    chmod 755 "$C3TL_PG_DIR"
    chown "$C3TL_PG_USER" "$C3TL_PG_DIR"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    c3tl_pg_as "$bindir/initdb" -D "$C3TL_PG_DIR/data" -U postgres --auth=trust \
        -E UTF8 >"$C3TL_PG_DIR/initdb.log" 2>&1 || {
        echo "postgres: initdb failed:" >&2; cat "$C3TL_PG_DIR/initdb.log" >&2; return 0; }
    C3TL_PG_CTL="$bindir/pg_ctl"
    trap c3tl_pg_stop EXIT
    c3tl_pg_as "$C3TL_PG_CTL" -D "$C3TL_PG_DIR/data" -l "$C3TL_PG_DIR/server.log" -w -t 60 \
        -o "-p $port -k $C3TL_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start \
        >/dev/null || {
        echo "postgres: the server did not start:" >&2; cat "$C3TL_PG_DIR/server.log" >&2
        return 0; }
    c3tl_pg_as "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres c3tl_test || {
        echo "postgres: createdb failed" >&2; return 0; }
    export C3TL_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/c3tl_test"
    echo "postgres: $C3TL_TEST_POSTGRES_URL" >&2
}

c3tl_pg_as() {
    if [[ "$C3TL_PG_USER" == "$(id -un)" ]]; then "$@"; else runuser -u "$C3TL_PG_USER" -- "$@"; fi
}

c3tl_pg_stop() {
    if [[ -n "${C3TL_PG_CTL:-}" && -d "${C3TL_PG_DIR:-}/data" ]]; then
        c3tl_pg_as "$C3TL_PG_CTL" -D "$C3TL_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [[ -n "${C3TL_PG_DIR:-}" ]] && rm -rf "$C3TL_PG_DIR"
    return 0
}
