#!/usr/bin/env bash
# Feast's venv for `make bench-featurestore`: $DATA/feast-venv with
# bench/featurestore/feast/requirements.txt, apart from the project's venv.
# Rebuilt when requirements.txt changed since the last build (its sha256 is
# kept in the venv); a no-op otherwise. Prints the venv's python on success.
set -euo pipefail
# shellcheck source=deploy/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../../deploy/local/common.sh"

REQS=$WEIR_ROOT/bench/featurestore/feast/requirements.txt
VENV=$DATA/feast-venv
STAMP=$VENV/requirements.sha256
BASE=${WEIR_PYTHON_BASE:-python3}

if [[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$(sha256sum "$REQS" | cut -d' ' -f1)" ]]; then
	log "feast venv $VENV is up to date ($("$VENV/bin/feast" version 2>/dev/null || echo '?'))"
	exit 0
fi
"$BASE" -c 'import ensurepip, venv' 2>/dev/null || die "python3 cannot make venvs: apt-get install python3-venv"
log "building $VENV from bench/featurestore/feast/requirements.txt (a few minutes; log in $DATA/feast-pip.log)"
rm -rf "$VENV"
"$BASE" -m venv "$VENV"
if ! "$VENV/bin/python" -m pip -q --disable-pip-version-check --no-input install -r "$REQS" >"$DATA/feast-pip.log" 2>&1; then
	tail -40 "$DATA/feast-pip.log" >&2
	die "feast venv: pip install failed (full log: $DATA/feast-pip.log)"
fi
sha256sum "$REQS" | cut -d' ' -f1 >"$STAMP"
log "feast venv ready: $("$VENV/bin/feast" version 2>/dev/null || echo '?')"
