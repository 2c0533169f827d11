#!/usr/bin/env bash
# Installs moto (the local AWS emulator) and boto3 into a virtualenv inside the
# checkout, so nothing has to be installed by hand. Idempotent: a second run
# only checks that the pinned versions are there.
#
#   deploy/local/install-moto.sh           # creates .venv-moto/ at the repo root
#   CUTOVER_VENV=/some/dir deploy/local/install-moto.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${CUTOVER_VENV:-$root/.venv-moto}"
req="$root/deploy/local/requirements.txt"
stamp="$venv/.requirements.sha"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/moto_server" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "installing moto into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
