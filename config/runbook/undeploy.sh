#!/bin/sh
# Stand-in: take the new version off the new colour
echo "runbook: take the new version off the new colour ($CUTOVER_SERVICE, new colour $CUTOVER_NEW_COLOR)"
