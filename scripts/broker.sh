#!/usr/bin/env bash
# A real Apache Kafka broker on this machine: one KRaft node (broker and controller in one JVM)
# run from the Maven Central jars of deployments/kafka/pom.xml (no Docker, no tarball download).
#
#   scripts/broker.sh start    # fetch the jars once, format the data folder once, start, and
#                              # return when the broker answers a metadata request (idempotent)
#   scripts/broker.sh stop     # SIGTERM (a clean shutdown), SIGKILL after KAFKA_STOP_TIMEOUT s
#   scripts/broker.sh kill9    # SIGKILL: a crash, for recovery tests
#   scripts/broker.sh status   # exit 0 when running, 1 when not
#   scripts/broker.sh ready    # exit 0 once the broker answers metadata (waits KAFKA_START_TIMEOUT s)
#   scripts/broker.sh run      # the broker in the foreground (exec: the caller's child is the JVM)
#   scripts/broker.sh reset    # stop, then delete the data folder
#   scripts/broker.sh fetch    # only fetch the jars (the test command does this before the tests)
#   scripts/broker.sh tool CLASS ARGS...   # a Kafka tool, e.g.
#       scripts/broker.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Environment:
#   KAFKA_BROKERS          where it listens: the first host:port of the list (127.0.0.1:9092)
#   KAFKA_CONTROLLER_PORT  the KRaft controller's port (the broker port + 1)
#   KAFKA_DATA             its folder: config, data, broker.log, broker.pid (.cache/kafka/data-PORT)
#   KAFKA_HEAP_OPTS        (-Xmx512m -Xms512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (60)
#   KAFKA_STOP_TIMEOUT     seconds to wait for a clean exit before SIGKILL (30)
# Brokers on different ports with different data folders run side by side.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECIPE=$ROOT/deployments/kafka
CACHE=$ROOT/.cache/kafka
LIBS=$CACHE/libs
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

first=${KAFKA_BROKERS:-127.0.0.1:9092}
first=${first%%,*}
HOST=${first%:*}
PORT=${first##*:}
[[ $PORT =~ ^[0-9]+$ && $HOST != "$first" ]] || { echo "KAFKA_BROKERS: expected host:port, got '$first'" >&2; exit 2; }
CPORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
DATA=$(realpath -m "${KAFKA_DATA:-$CACHE/data-$PORT}")
PIDFILE=$DATA/broker.pid
LOG=$DATA/broker.log
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}

say() { printf '==> %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The jars, fetched by Maven into .cache/kafka/libs; fetched again only when pom.xml changes
# (its hash is kept beside them). A lock makes brokers started at once fetch only once.
ensure_libs() {
    local want
    want=$(sha256sum "$RECIPE/pom.xml" | cut -d' ' -f1)
    [ "$(cat "$LIBS/.pom.sha256" 2>/dev/null)" = "$want" ] && return
    command -v mvn >/dev/null || die "Maven is missing (apt-get install maven): it fetches Kafka's jars"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.fetch.lock"
    flock 9
    if [ "$(cat "$LIBS/.pom.sha256" 2>/dev/null)" != "$want" ]; then
        say "Fetching Kafka's jars from Maven Central into $LIBS (once)"
        local tmp=$CACHE/libs.tmp.$$
        rm -rf "$tmp"
        mvn -q -B -f "$RECIPE/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$CACHE/mvn.log" 2>&1 \
            || { cat "$CACHE/mvn.log" >&2; rm -rf "$tmp"; die "mvn failed (log above)"; }
        echo "$want" >"$tmp/.pom.sha256"
        rm -rf "$LIBS"
        mv "$tmp" "$LIBS"
    fi
    exec 9>&-
}

# A Kafka command-line tool: a short-lived JVM, so a small heap, C1 only and the serial GC,
# which start faster on 2 cores.
tool() {
    "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$RECIPE/tools-log4j2.yaml" -cp "$LIBS/*" "$@"
}

# Our broker is running: the pid file names a live JVM running kafka.Kafka on this data folder
# (not a reused pid, not a zombie, whose cmdline is empty).
is_running() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $DATA/server.properties"
}

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# server.properties: the fixed settings of deployments/kafka/ plus this instance's ports and folder.
write_config() {
    mkdir -p "$DATA/logs"
    {
        cat "$RECIPE/server.properties"
        printf '\n# This instance (scripts/broker.sh writes it at each start).\n'
        printf 'listeners=PLAINTEXT://%s:%s,CONTROLLER://%s:%s\n' "$HOST" "$PORT" "$HOST" "$CPORT"
        printf 'advertised.listeners=PLAINTEXT://%s:%s\n' "$HOST" "$PORT"
        # Static voters (the node itself), so the storage is formatted without --standalone.
        printf 'controller.quorum.voters=1@%s:%s\n' "$HOST" "$CPORT"
        printf 'log.dirs=%s/logs\n' "$DATA"
    } >"$DATA/server.properties"
}

# KRaft needs its storage formatted with a cluster id once; meta.properties says it was.
format_storage() {
    [ -f "$DATA/logs/meta.properties" ] && return
    touch "$DATA/.warm-up"  # see warm_up
    # A cluster id is 16 random bytes in URL-safe base64 without padding (what
    # `StorageTool random-uuid` prints, without its JVM start); none starting with '-',
    # which the tool would take for an option.
    local id=-
    while [[ $id == -* ]]; do id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); done
    say "Formatting $DATA/logs (cluster id $id)"
    tool kafka.tools.StorageTool format -t "$id" -c "$DATA/server.properties" >>"$LOG" 2>&1 \
        || { tail -n 20 "$LOG" >&2; die "formatting the storage failed"; }
}

broker_command() {
    local heap
    read -ra heap <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m}"
    # Kafka's own JVM flags (bin/kafka-run-class.sh), and exit on OOM rather than limp on.
    BROKER=("$JAVA" "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$RECIPE/log4j2.yaml" -Dlog4j2.shutdownHookEnabled=false
        -cp "$LIBS/*" kafka.Kafka "$DATA/server.properties")
}

# Everything before the JVM starts; under the data folder's lock (fd 8), so two starts of the
# same instance don't format or launch it twice.
prepare() {
    mkdir -p "$DATA"
    exec 8>"$DATA/.lock"
    flock 8
    ensure_libs
    if is_running; then return; fi
    for port in "$PORT" "$CPORT"; do
        listening "$HOST" "$port" && die "$HOST:$port is taken by another process (not the broker of $DATA)"
    done
    write_config
    format_storage
    broker_command
}

# Wait until the broker answers a metadata request: TopicCommand --list, one JVM whose admin
# client retries until the deadline. (Kafka accepts TCP connections before it serves requests;
# it serves them only once it has caught up with its metadata and is unfenced.) With watch=1,
# gives up as soon as our broker process is gone.
wait_ready() {
    local timeout=$1 watch=$2 probe
    rm -f "$DATA/probe.log"
    [ "$watch" = 1 ] && ! is_running && return 1
    printf '%s\n' "request.timeout.ms=5000" "default.api.timeout.ms=$((timeout > 5 ? timeout * 1000 : 5000))" \
        "reconnect.backoff.max.ms=250" "retry.backoff.max.ms=250" >"$DATA/probe.properties"
    tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$PORT" --list \
        --command-config "$DATA/probe.properties" >"$DATA/probe.log" 2>&1 8>&- 9>&- &
    probe=$!
    local deadline=$((SECONDS + timeout + 15))
    while kill -0 "$probe" 2>/dev/null; do
        if { [ "$watch" = 1 ] && ! is_running; } || ((SECONDS > deadline)); then
            kill "$probe" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    wait "$probe"
}

# A new broker creates __consumer_offsets on the first FindCoordinator, and librdkafka then
# retries for ~3 s before its first group can join: so once, on a freshly formatted broker, ask
# for a group. (The command exits 0 whatever happens; "Group ... not found" is the answer expected.)
warm_up() {
    [ -f "$DATA/.warm-up" ] || return 0
    tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$HOST:$PORT" \
        --describe --group broker.sh-warm-up --command-config "$DATA/probe.properties" >>"$DATA/probe.log" 2>&1 8>&- || true
    rm -f "$DATA/.warm-up"
}

fail_start() {
    say "$1; the tail of $LOG:"
    tail -n 40 "$LOG" >&2 || true
    say "the readiness probe said:"
    tail -n 5 "$DATA/probe.log" >&2 || true
    cmd_stop >/dev/null 2>&1 || true
    exit 1
}

cmd_start() {
    prepare
    if is_running; then
        say "Already running (pid $(cat "$PIDFILE")); waiting for it to answer"
    else
        say "Starting Kafka on $HOST:$PORT (controller :$CPORT, data $DATA)"
        rm -f "$PIDFILE"
        printf '=== scripts/broker.sh start, %s\n' "$(date -u +%FT%TZ)" >>"$LOG"
        # In a session of its own (setsid), so it outlives this script and the caller's Ctrl-C;
        # the inner shell writes its pid and becomes the JVM (exec), in the data folder (hs_err).
        # The lock fds are closed, or the JVM would hold them.
        # shellcheck disable=SC2016 # $1 $2 $$ are the inner shell's
        setsid bash -c 'cd "$1" && echo $$ >"$2" && shift 2 && exec "$@"' _ "$DATA" "$PIDFILE" "${BROKER[@]}" \
            >>"$LOG" 2>&1 </dev/null 8>&- 9>&- &
        for _ in $(seq 1 50); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
    fi
    local t0=$SECONDS
    wait_ready "$START_TIMEOUT" 1 || {
        is_running && fail_start "no answer to a metadata request within ${START_TIMEOUT}s"
        fail_start "the broker exited"
    }
    local answered=$((SECONDS - t0))
    warm_up
    exec 8>&-
    say "Kafka is up on $HOST:$PORT (pid $(cat "$PIDFILE"), answered after ${answered}s)"
}

cmd_run() {
    prepare
    is_running && die "already running (pid $(cat "$PIDFILE"))"
    exec 8>&-
    echo $$ >"$PIDFILE"
    cd "$DATA"
    exec "${BROKER[@]}"
}

# Wait (up to $1 s) for our JVM to be gone; a zombie (a `run` child not yet reaped) counts as gone.
wait_exit() {
    for _ in $(seq 1 $(($1 * 10))); do is_running || return 0; sleep 0.1; done
    return 1
}

cmd_stop() {
    if ! is_running; then rm -f "$PIDFILE"; say "Not running ($DATA)"; return 0; fi
    local pid
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$STOP_TIMEOUT"; then
        say "No exit ${STOP_TIMEOUT}s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit 10 || die "pid $pid survived SIGKILL"
    fi
    rm -f "$PIDFILE"
    say "Stopped (pid $pid)"
}

cmd_kill9() {
    if ! is_running; then say "Not running ($DATA)"; return 0; fi
    local pid
    pid=$(cat "$PIDFILE")
    kill -KILL "$pid"
    wait_exit 10 || die "pid $pid survived SIGKILL"
    rm -f "$PIDFILE"
    say "Killed (pid $pid)"
}

cmd_status() {
    if is_running; then
        echo "running: pid $(cat "$PIDFILE"), $(sed -n 's/^listeners=//p' "$DATA/server.properties"), data $DATA"
    else
        echo "not running: $HOST:$PORT, data $DATA"
        return 1
    fi
}

cmd_reset() {
    cmd_stop
    # Only a folder this script made (it has our server.properties), never whatever KAFKA_DATA names.
    if [ -e "$DATA" ] && [ ! -f "$DATA/server.properties" ]; then
        die "$DATA has no server.properties: not a broker folder of ours, left alone"
    fi
    rm -rf "$DATA"
    say "Deleted $DATA"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    kill9) cmd_kill9 ;;
    status) cmd_status ;;
    ready)
        ensure_libs
        mkdir -p "$DATA"
        wait_ready "$START_TIMEOUT" "$(is_running && echo 1)" || { tail -n 5 "$DATA/probe.log" >&2; die "no answer from $HOST:$PORT"; }
        warm_up
        ;;
    run) cmd_run ;;
    reset) cmd_reset ;;
    tool) shift; ensure_libs; tool "$@" ;;
    fetch) ensure_libs ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
