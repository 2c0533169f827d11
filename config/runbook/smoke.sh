#!/bin/sh
# Stand-in: smoke test against the new colour before its weight goes up
echo "runbook: smoke test against the new colour before its weight goes up ($CUTOVER_SERVICE, new colour $CUTOVER_NEW_COLOR)"
