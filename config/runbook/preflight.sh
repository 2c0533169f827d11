#!/bin/sh
# Stand-in: preflight checks: change ticket approved, dependencies healthy
echo "runbook: preflight checks: change ticket approved, dependencies healthy ($CUTOVER_SERVICE, new colour $CUTOVER_NEW_COLOR)"
