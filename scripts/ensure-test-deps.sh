#!/usr/bin/env bash
# What the test suite needs outside Python, installed and started when missing:
# - redis-server answering on 127.0.0.1:$REDIS_PORT (default 6379): the Redis store tests use it;
# - promtool and the prometheus server (Debian package `prometheus`): promtool checks the config,
#   rules and alert tests in deploy/prometheus; the server scrapes a real `ccrl serve` in the suite
#   (tests/service/test_prometheus_live.py);
# - hey (Debian package `hey`): the load generator that the benchmark's tiny run in the suite uses;
# - chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): the review page's
#   browser test drives them with Selenium (no browser or driver is ever downloaded).
# Debian packages are installed with apt-get (as root, or through sudo).
set -euo pipefail
port="${REDIS_PORT:-6379}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v hey >/dev/null 2>&1 || missing+=(hey)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    $SUDO apt-get update -qq
    # policy-rc.d-free install: the packages' own services are not needed (we start redis below).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
if cli ping >/dev/null 2>&1; then
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
echo "redis-server did not answer on 127.0.0.1:$port" >&2
exit 1
