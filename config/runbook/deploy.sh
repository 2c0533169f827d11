#!/bin/sh
# Stand-in: deploy the new version to the new colour
echo "runbook: deploy the new version to the new colour ($CUTOVER_SERVICE, new colour $CUTOVER_NEW_COLOR)"
