#!/usr/bin/env bash
# Local redis-server on 127.0.0.1. Usage: redis.sh start|stop|status
# Environment: REDIS_PORT (6379), REDIS_VAR (var/redis-$REDIS_PORT), REDIS_PERSIST (0: no RDB/AOF;
# 1: the server's default RDB snapshots), REDIS_READY_TIMEOUT (30), REDIS_ACL_FILE (optional).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
port=${REDIS_PORT:-6379}
var=${REDIS_VAR:-$root/var/redis-$port}
pidfile=$var/redis.pid

command -v redis-server >/dev/null 2>&1 || {
  echo "error: 'redis-server' not found: install it (Debian: apt-get install redis-server)" >&2; exit 2; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

ping() { redis-cli -h 127.0.0.1 -p "$port" --no-auth-warning ${REDIS_PASSWORD:+-a "$REDIS_PASSWORD"} ping 2>/dev/null | grep -q PONG; }

start() {
  if running; then echo "redis already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  mkdir -p "$var"
  local persist=(--save '' --appendonly no)
  if [ "${REDIS_PERSIST:-0}" = 1 ]; then persist=(--save '3600 1 300 100 60 10000' --appendonly no); fi
  local acl=()
  if [ -n "${REDIS_ACL_FILE:-}" ]; then acl=(--aclfile "$REDIS_ACL_FILE"); fi
  redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --pidfile "$pidfile" \
    --dir "$var" --logfile "$var/redis.log" --protected-mode yes "${persist[@]}" "${acl[@]}" \
    --enable-debug-command local
  local deadline=$((SECONDS + ${REDIS_READY_TIMEOUT:-30}))
  until ping; do
    if [ $SECONDS -ge $deadline ]; then echo "error: redis did not answer PING on $port" >&2; tail -n 20 "$var/redis.log" >&2; exit 1; fi
    sleep 0.1
  done
  echo "redis ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
}

stop() {
  if ! running; then rm -f "$pidfile"; echo "redis on port $port not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
  rm -f "$pidfile"; echo "redis on port $port stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$pidfile"))"; else echo "stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
