#!/usr/bin/env bash
# Stops Weir's local stack (see setup.sh); the data in $DATA stays.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")

bash "$here/kafka.sh" stop
bash "$here/clickhouse.sh" stop
bash "$here/redis.sh" cluster-stop
bash "$here/redis.sh" stop
