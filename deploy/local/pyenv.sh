#!/usr/bin/env bash
# The project's Python: a venv at $DATA/venv with deploy/local/requirements.txt.
#
#   deploy/local/pyenv.sh install|start|stop|restart|status
#
# install builds the venv afresh when requirements.txt has changed since the
# last build (its sha256 is kept in the venv) and does nothing otherwise.
# There is no process, so start only checks and stop does nothing. The base
# interpreter is $WEIR_PYTHON_BASE, else python3 from PATH.
set -euo pipefail
# shellcheck source=deploy/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REQS=$WEIR_ROOT/deploy/local/requirements.txt
VENV=$DATA/venv
STAMP=$VENV/requirements.sha256
BASE=${WEIR_PYTHON_BASE:-python3}

up_to_date() {
	[[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$(sha256sum "$REQS" | cut -d' ' -f1)" ]]
}

cmd_install() {
	up_to_date && return 0
	# Debian's python3 makes venvs only with python3-venv installed.
	"$BASE" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3 python3-venv
	log "building $VENV from $(basename "$REQS") (about a minute)"
	rm -rf "$VENV"
	"$BASE" -m venv "$VENV"
	local pip=("$VENV/bin/python" -m pip -q --disable-pip-version-check --no-input)
	if ! "${pip[@]}" install -r "$REQS" >"$DATA/pip.log" 2>&1; then
		cat "$DATA/pip.log" >&2
		die "pyenv: pip install failed"
	fi
	# Written last: a failed build is retried on the next run.
	sha256sum "$REQS" | cut -d' ' -f1 >"$STAMP"
}

cmd_status() {
	if up_to_date; then
		echo "pyenv: $VENV/bin/python ($("$VENV/bin/python" -V 2>&1), requirements up to date)"
	else
		echo "pyenv: $VENV missing or out of date; run $0 install"
		return 1
	fi
}

case ${1:-} in
install) cmd_install ;;
start | restart | status) cmd_status ;;
stop) ;;
*)
	echo "usage: $0 install|start|stop|restart|status" >&2
	exit 2
	;;
esac
