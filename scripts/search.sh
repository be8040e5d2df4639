#!/usr/bin/env bash
# A real search engine for the Elasticsearch sink's tests: a single-node OpenSearch 2.19 built
# from Maven Central jars (deployments/opensearch) and started by our launcher, SearchNode.
#
#   scripts/search.sh start    start in the background; returns once the cluster is yellow
#   scripts/search.sh stop     SIGTERM, then SIGKILL after 20 s
#   scripts/search.sh status   running or not, and the cluster health
#   scripts/search.sh build    build (or reuse) the launcher and its jars only
#   scripts/search.sh run ARGS build, then exec the node in the foreground with SearchNode's own
#                              options (--http-port P|0 --data DIR ...): for a test harness that
#                              owns the process; the bound port is in DIR/http.port once started
#   scripts/search.sh classpath
#
# Port: SEARCH_PORT, else the port of ELASTICSEARCH_URL, else 9200. Instance folder (data, logs,
# search.pid, search.log): SEARCH_DATA, else .cache/opensearch/data-PORT. Instances on different
# ports with different folders run side by side. Heap: SEARCH_HEAP (512m); more JVM flags:
# SEARCH_JAVA_OPTS; start timeout: SEARCH_START_TIMEOUT (90 s); Java: JAVA (java on PATH, 17+).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
project="$repo/deployments/opensearch"
cache="${SEARCH_CACHE:-$repo/.cache/opensearch}"
build="$cache/build"
java="${JAVA:-java}"

if [[ -n "${SEARCH_PORT:-}" ]]; then
    port="$SEARCH_PORT"
else
    url="${ELASTICSEARCH_URL:-http://127.0.0.1:9200}"
    hostport="${url#*://}"
    hostport="${hostport%%/*}"
    port="${hostport##*:}"
    [[ "$port" == "$hostport" ]] && port=9200
fi
[[ "$port" =~ ^[0-9]+$ ]] || { echo "search.sh: bad port '$port'" >&2; exit 2; }
data="${SEARCH_DATA:-$cache/data-$port}"
pidfile="$data/search.pid"
logfile="$data/search.log"
url="http://127.0.0.1:$port"

jvm_flags() {
    local heap="${SEARCH_HEAP:-512m}"
    # As the distribution's jvm.options, less what only its bootstrap needs; no security manager.
    printf '%s\n' "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:TieredStopAtLevel=1 -Xss1m -XX:-OmitStackTraceInFastThrow \
        -Dfile.encoding=UTF-8 -Djava.awt.headless=true -Djava.locale.providers=SPI,COMPAT \
        -Dopensearch.set.netty.runtime.available.processors=false \
        -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
        -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0 \
        -Dlog4j2.disable.jmx=true -Dlog4j.shutdownHookEnabled=false \
        "-Djava.io.tmpdir=${TMPDIR:-/tmp}"
    # shellcheck disable=SC2086
    [[ -n "${SEARCH_JAVA_OPTS:-}" ]] && printf '%s\n' $SEARCH_JAVA_OPTS
    return 0
}

# Build the launcher and copy its jars into .cache/opensearch/build, unless the pom and the
# sources are unchanged since the last build (a stamp holds their hash).
cmd_build() {
    command -v mvn >/dev/null || { echo "search.sh: mvn is not installed (apt-get install maven)" >&2; exit 1; }
    mkdir -p "$cache"
    local hash
    hash="$(cd "$project" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
    (
        # Two starts at once (tests) build once.
        flock 9
        if [[ -f "$build/.stamp" && "$(cat "$build/.stamp")" == "$hash" && -f "$build/fxflow-search-node.jar" ]]; then
            exit 0
        fi
        echo "search.sh: building the OpenSearch launcher (Maven) into $build" >&2
        rm -rf "$build"
        if ! mvn -q -B -Dstyle.color=never -f "$project/pom.xml" "-Dos.build.dir=$build" package >"$cache/build.log" 2>&1; then
            cat "$cache/build.log" >&2
            echo "search.sh: the Maven build failed (log: $cache/build.log)" >&2
            exit 1
        fi
        echo "$hash" >"$build/.stamp"
    ) 9>"$cache/build.lock"
}

classpath() {
    echo "$build/fxflow-search-node.jar:$build/lib/*"
}

running_pid() {
    [[ -f "$pidfile" ]] || return 1
    local pid
    pid="$(cat "$pidfile")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -qa fxflow.search.SearchNode "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

healthy() {
    curl -fsS --max-time 5 "$url/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null | grep -q '"timed_out":false'
}

cmd_start() {
    if pid="$(running_pid)"; then
        if healthy; then
            echo "search.sh: already running (pid $pid) on $url"
            return 0
        fi
    elif curl -fsS --max-time 2 "$url/" >/dev/null 2>&1 || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "search.sh: port $port is already taken by something else" >&2
        exit 1
    fi
    cmd_build
    mkdir -p "$data"
    if [[ -z "${pid:-}" ]]; then
        rm -f "$data/http.port"
        local flags
        mapfile -t flags < <(jvm_flags)
        # setsid: its own session, so the caller's Ctrl-C or process group kill leaves it be.
        setsid nohup "$java" "${flags[@]}" -cp "$(classpath)" fxflow.search.SearchNode \
            --http-port "$port" --data "$data" --node-name "search-$port" \
            </dev/null >>"$logfile" 2>&1 &
        pid=$!
        echo "$pid" >"$pidfile"
    fi
    local timeout="${SEARCH_START_TIMEOUT:-90}" start=$SECONDS
    until [[ -f "$data/http.port" ]] && healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "search.sh: OpenSearch exited during start; log tail ($logfile):" >&2
            tail -n 40 "$logfile" >&2
            rm -f "$pidfile"
            exit 1
        fi
        if ((SECONDS - start >= timeout)); then
            echo "search.sh: OpenSearch not yellow after ${timeout}s; log tail ($logfile):" >&2
            tail -n 40 "$logfile" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "search.sh: OpenSearch running (pid $pid) on $url, data in $data ($((SECONDS - start))s)"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$pidfile"
        echo "search.sh: not running ($url)"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "search.sh: pid $pid still alive after 20s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
    echo "search.sh: stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running (pid $pid) on $url, data in $data"
        curl -fsS --max-time 5 "$url/_cluster/health" && echo
    else
        echo "not running ($url)"
        return 3
    fi
}

cmd_run() {
    cmd_build
    local flags
    mapfile -t flags < <(jvm_flags)
    exec "$java" "${flags[@]}" -cp "$(classpath)" fxflow.search.SearchNode "$@"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    build) cmd_build ;;
    classpath) cmd_build && classpath ;;
    run) shift && cmd_run "$@" ;;
    *)
        echo "usage: scripts/search.sh start|stop|status|build|classpath|run [SearchNode options]" >&2
        exit 2
        ;;
esac
