#!/usr/bin/env bash
# Installs and starts Weir's local stack, then writes $DATA/env for tests and
# `weir dev`:
#
#   redis       127.0.0.1:16379
#   clickhouse  127.0.0.1:19000 (native), 18123 (http)
#   kafka       127.0.0.1:19092 (broker), 19093 (controller)
#   pyenv       $DATA/venv
#   promtool    from Debian's prometheus package
#
# Idempotent: what is installed and running is left alone, one line each.
# Stop everything with deploy/local/stop.sh. Data lives in $WEIR_DATA,
# <repo>/.weir by default.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=deploy/local/common.sh
source "$here/common.sh"

# Installs (apt, Maven, pip) come first: a fresh machine spends its minute or
# two there, before any server starts.
bash "$here/redis.sh" install
bash "$here/clickhouse.sh" install
bash "$here/kafka.sh" install
bash "$here/pyenv.sh" install
# Prometheus tooling: tests lint /metrics with promtool (Debian's prometheus
# package brings it; its service is not started).
apt_install prometheus
echo "promtool: $(command -v promtool)"

bash "$here/redis.sh" start
bash "$here/clickhouse.sh" start
bash "$here/kafka.sh" start
bash "$here/pyenv.sh" start

# Written through a temporary file, so a reader never sees half of it.
cat >"$DATA/env.tmp" <<ENV
# Written by deploy/local/setup.sh: source it to reach the local stack.
export WEIR_DATA=$(printf %q "$DATA")
export WEIR_REDIS_ADDR=127.0.0.1:${WEIR_REDIS_PORT:-16379}
export WEIR_CLICKHOUSE_ADDR=127.0.0.1:${WEIR_CLICKHOUSE_PORT:-19000}
export WEIR_KAFKA_BROKERS=127.0.0.1:${WEIR_KAFKA_PORT:-19092}
export WEIR_PYTHON=$(printf %q "$DATA/venv/bin/python")
ENV
mv "$DATA/env.tmp" "$DATA/env"
