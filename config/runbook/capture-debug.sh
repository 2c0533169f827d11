#!/bin/sh
# Stand-in: keep logs and a heap dump of the new colour for the post-mortem
echo "runbook: keep logs and a heap dump of the new colour for the post-mortem ($CUTOVER_SERVICE, new colour $CUTOVER_NEW_COLOR)"
