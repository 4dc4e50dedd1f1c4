#!/usr/bin/env bash
# Redis 7 (Debian's redis-server) for Weir's online feature store and tests.
#
#   deploy/local/redis.sh install|start|stop|restart|status
#   deploy/local/redis.sh cluster-start|cluster-stop|cluster-status
#
# Runs as a plain daemonized process on 127.0.0.1:$WEIR_REDIS_PORT (16379),
# append-only, no RDB snapshots, data and log in $DATA/redis.
#
# cluster-start runs a small Redis Cluster for the tests that need one: three
# masters, no replicas, on 127.0.0.1 ports $WEIR_REDIS_CLUSTER_PORTS (17001
# 17002 17003; cluster bus on each port + 10000), in memory only, logs in
# $DATA/redis-cluster. It prints the seed addresses, comma-separated, as its
# last line. A cluster that is up and healthy is left alone; anything else is
# stopped and created afresh (it holds test data only). `make setup` does not
# start it; the tests do.
set -euo pipefail
# shellcheck source=deploy/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=${WEIR_REDIS_PORT:-16379}
DIR=$DATA/redis
PIDFILE=$DIR/redis.pid
LOGFILE=$DIR/redis.log

ping() {
	[[ $(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null) == PONG ]]
}

cmd_install() {
	apt_install redis-server redis-tools
}

cmd_start() {
	if ping; then
		echo "redis: running on 127.0.0.1:$PORT"
		return 0
	fi
	if port_open 127.0.0.1 "$PORT"; then
		die "redis: port $PORT is taken by something that does not answer PING"
	fi
	mkdir -p "$DIR"
	log "starting redis on 127.0.0.1:$PORT (data in $DIR)"
	redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR" \
		--save '' --appendonly yes \
		--daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE"
	if ! wait_for 10 redis ping; then
		log_tail "$LOGFILE"
		exit 1
	fi
	echo "redis: running on 127.0.0.1:$PORT"
}

cmd_stop() {
	stop_pid redis "$PIDFILE" redis-server 30
}

cmd_status() {
	if ping; then
		echo "redis: running on 127.0.0.1:$PORT"
	else
		echo "redis: not running"
		return 1
	fi
}

read -r -a CLUSTER_PORTS <<<"${WEIR_REDIS_CLUSTER_PORTS:-17001 17002 17003}"
CLUSTER_DIR=$DATA/redis-cluster

cluster_addrs() {
	local p out=()
	for p in "${CLUSTER_PORTS[@]}"; do
		out+=("127.0.0.1:$p")
	done
	(IFS=,; echo "${out[*]}")
}

# cluster_ok: every node answers and reports a healthy cluster of all of them.
cluster_ok() {
	local p info
	for p in "${CLUSTER_PORTS[@]}"; do
		info=$(redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null) || return 1
		grep -q '^cluster_state:ok' <<<"$info" || return 1
		grep -q "^cluster_known_nodes:${#CLUSTER_PORTS[@]}" <<<"$info" || return 1
	done
}

cmd_cluster_stop() {
	local p
	for p in "${CLUSTER_PORTS[@]}"; do
		stop_pid "redis cluster node $p" "$CLUSTER_DIR/$p/redis.pid" redis-server 30
	done
}

cmd_cluster_start() {
	mkdir -p "$CLUSTER_DIR"
	# Tests of several packages may ask at once: one of them creates it.
	exec 9>"$CLUSTER_DIR/lock"
	flock 9
	if cluster_ok; then
		echo "redis cluster: running on $(cluster_addrs)"
		cluster_addrs
		return 0
	fi
	cmd_cluster_stop >/dev/null
	local p
	for p in "${CLUSTER_PORTS[@]}"; do
		if port_open 127.0.0.1 "$p"; then
			die "redis cluster: port $p is taken by something else"
		fi
		rm -rf "${CLUSTER_DIR:?}/$p"
		mkdir -p "$CLUSTER_DIR/$p"
	done
	log "starting a Redis Cluster of ${#CLUSTER_PORTS[@]} masters on $(cluster_addrs) (logs in $CLUSTER_DIR)"
	for p in "${CLUSTER_PORTS[@]}"; do
		redis-server --port "$p" --bind 127.0.0.1 --dir "$CLUSTER_DIR/$p" \
			--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
			--save '' --appendonly no \
			--daemonize yes --pidfile "$CLUSTER_DIR/$p/redis.pid" --logfile "$CLUSTER_DIR/$p/redis.log" 9>&- # not the lock
	done
	for p in "${CLUSTER_PORTS[@]}"; do
		if ! wait_for 10 "redis cluster node $p" redis-cli -h 127.0.0.1 -p "$p" ping >/dev/null; then
			log_tail "$CLUSTER_DIR/$p/redis.log"
			exit 1
		fi
	done
	local addrs
	addrs=$(cluster_addrs)
	redis-cli --cluster create ${addrs//,/ } --cluster-replicas 0 --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 ||
		{ cat "$CLUSTER_DIR/create.log" >&2; die "redis-cli --cluster create failed"; }
	if ! wait_for 20 "redis cluster state ok" cluster_ok; then
		log_tail "$CLUSTER_DIR/${CLUSTER_PORTS[0]}/redis.log"
		exit 1
	fi
	echo "redis cluster: running on $addrs"
	echo "$addrs"
}

cmd_cluster_status() {
	if cluster_ok; then
		echo "redis cluster: running on $(cluster_addrs)"
	else
		echo "redis cluster: not running"
		return 1
	fi
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop && cmd_start ;;
status) cmd_status ;;
cluster-start) cmd_cluster_start ;;
cluster-stop) cmd_cluster_stop ;;
cluster-status) cmd_cluster_status ;;
*)
	echo "usage: $0 install|start|stop|restart|status|cluster-start|cluster-stop|cluster-status" >&2
	exit 2
	;;
esac
