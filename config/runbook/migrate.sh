#!/bin/sh
# Stand-in: the schema migration, forward (up) or backward (down).
echo "runbook: migrate $1 ($CUTOVER_SERVICE)"
