#!/usr/bin/env bash
# Make sure a redis-server answers on REDIS_TEST_URL's port (default 127.0.0.1:6379):
# install redis-server with apt-get when missing, start it when it is not running.
set -euo pipefail
port="${REDIS_PORT:-6379}"
cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found: installing it with apt-get" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
if command -v redis-cli >/dev/null 2>&1 && cli ping >/dev/null 2>&1; then
    exit 0
fi
echo "starting redis-server on 127.0.0.1:$port" >&2
mkdir -p /tmp/ccrl-redis
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir /tmp/ccrl-redis --logfile /tmp/ccrl-redis/redis.log
for _ in $(seq 1 50); do
    cli ping >/dev/null 2>&1 && exit 0
    sleep 0.1
done
echo "redis-server did not answer on port $port" >&2
exit 1
