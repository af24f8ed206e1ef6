#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) from the jars that
# `mvn` resolved into ops/kafka/lib. Usage: kafka.sh start|stop|status|resolve
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_HEAP (512m),
#              KAFKA_OPTS (more JVM options, e.g. GC logging), KAFKA_VAR (var/kafka-$KAFKA_PORT),
#              KAFKA_SASL (0|1: SASL/SCRAM listener on KAFKA_PORT, credentials KAFKA_SASL_USER /
#              KAFKA_SASL_PASSWORD), KAFKA_READY_TIMEOUT (90).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
var=${KAFKA_VAR:-$root/var/kafka-$port}
pidfile=$var/kafka.pid
python=${PYTHON_BIN:-$root/.venv/bin/python}

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' not found: install $2" >&2; exit 2; }; }

resolve() {
  need java "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
  need mvn "Apache Maven (Debian: apt-get install maven)"
  if [ ! -f "$here/lib/.stamp" ] || [ "$here/pom.xml" -nt "$here/lib/.stamp" ]; then
    echo "resolving Kafka jars from Maven Central (ops/kafka/pom.xml)..."
    rm -rf "$here/lib"
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$here/lib" -DincludeScope=runtime
    touch "$here/lib/.stamp"
  fi
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

write_config() {
  mkdir -p "$var/data" "$var/logs"
  local listeners="PLAINTEXT://127.0.0.1:$port" protomap="PLAINTEXT:PLAINTEXT"
  local extra=""
  if [ "${KAFKA_SASL:-0}" = 1 ]; then
    listeners="SASL_PLAINTEXT://127.0.0.1:$port"
    protomap="SASL_PLAINTEXT:SASL_PLAINTEXT"
    extra="sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${KAFKA_SASL_USER:-fraudstream}\" password=\"${KAFKA_SASL_PASSWORD:-fraudstream-secret}\";"
  fi
  cat >"$var/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=${listeners},CONTROLLER://127.0.0.1:$cport
advertised.listeners=${listeners}
controller.listener.names=CONTROLLER
inter.broker.listener.name=${listeners%%://*}
listener.security.protocol.map=${protomap},CONTROLLER:PLAINTEXT
log.dirs=$var/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=720
log.segment.bytes=268435456
num.network.threads=2
num.io.threads=4
$extra
CONF
}

format_storage() {
  [ -f "$var/data/meta.properties" ] && return 0
  local cid
  cid=$(java -cp "$here/lib/*" -Dlog4j2.configurationFile="$here/log4j2.properties" \
        kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
  local scram=()
  if [ "${KAFKA_SASL:-0}" = 1 ]; then
    scram=(--add-scram "SCRAM-SHA-256=[name=${KAFKA_SASL_USER:-fraudstream},password=${KAFKA_SASL_PASSWORD:-fraudstream-secret}]")
  fi
  java -cp "$here/lib/*" -Dlog4j2.configurationFile="$here/log4j2.properties" \
    kafka.tools.StorageTool format -t "$cid" -c "$var/server.properties" "${scram[@]}" \
    >"$var/logs/format.log" 2>&1 || { cat "$var/logs/format.log" >&2; exit 1; }
}

start() {
  resolve
  if running; then echo "kafka already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  write_config
  format_storage
  KAFKA_LOG_DIR="$var/logs" setsid nohup java -Xms${KAFKA_HEAP:-512m} -Xmx${KAFKA_HEAP:-512m} \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    ${KAFKA_OPTS:-} \
    -Dkafka.logs.dir="$var/logs" -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$here/lib/*" kafka.Kafka "$var/server.properties" >"$var/logs/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  local args=(--bootstrap "127.0.0.1:$port" --timeout "${KAFKA_READY_TIMEOUT:-90}")
  if [ "${KAFKA_SASL:-0}" = 1 ]; then args+=(--sasl); fi
  if ! "$python" "$root/ops/wait_kafka.py" "${args[@]}" --pid "$(cat "$pidfile")"; then
    echo "kafka did not become ready; last log lines:" >&2
    tail -n 30 "$var/logs/stdout.log" "$var/logs/server.log" 2>/dev/null >&2 || true
    stop; exit 1
  fi
  echo "kafka ready on 127.0.0.1:$port (pid $(cat "$pidfile"), data in $var)"
}

stop() {
  if ! running; then rm -f "$pidfile"; echo "kafka on port $port not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "kafka did not stop in 30 s; killing" >&2; kill -KILL "$pid" || true; fi
  rm -f "$pidfile"; echo "kafka on port $port stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$pidfile"))"; else echo "stopped"; exit 3; fi ;;
  resolve) resolve ;;
  *) echo "usage: $0 start|stop|status|resolve" >&2; exit 2 ;;
esac
