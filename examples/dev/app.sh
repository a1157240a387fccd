#!/usr/bin/env bash
# A stand-in for your app: it writes its pid where the dev config's notify
# target looks (out-app.pid) and, on each SIGHUP, prints the files it reads.
# Run it beside `npm start`, then edit examples/dev/secrets.yaml.
cd "$(dirname "$0")/../.." || exit 1
echo $$ > out-app.pid
show() { echo "--- $(date +%T) app reloaded its secrets:"; cat out/db.env; echo; }
trap show HUP
trap 'rm -f out-app.pid; exit 0' INT TERM
echo "sample app running (pid $$); waiting for SIGHUP from secrets-agent"
while :; do sleep 1 & wait $!; done
