#!/usr/bin/env bash
# Started by `make run` next to the daemon: once the demo station serves,
# starts a roll call on the merged channel and shows it live, and plays the
# phone app of guard g06 (he answers over MQTT). The daemon's own log runs in
# the same terminal; the roll call's lines start with the guard ids.
set -u
cd "$(dirname "$0")/.."
ctl=./target/release/rollcallctl
addr=127.0.0.1:50051

for _ in $(seq 1 150); do
  "$ctl" --addr "$addr" status >/dev/null 2>&1 && break
  sleep 0.2
done
if ! "$ctl" --addr "$addr" status; then
  echo "demo: the daemon did not come up on $addr" >&2
  exit 1
fi

# Guard g06's phone: answers the first roll call it is asked.
if command -v mosquitto_sub >/dev/null; then
  (
    msg=$(mosquitto_sub -h 127.0.0.1 -p 1883 -C 1 -W 300 -t 'rollcall/demo/guards/g06/rollcall' 2>/dev/null)
    run=$(printf '%s' "$msg" | sed -n 's/.*"run_id":\([0-9]*\).*/\1/p')
    if [ -n "$run" ]; then
      sleep 4
      mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t 'rollcall/demo/ack/g06' -m "{\"v\":1,\"run_id\":$run}"
      echo "demo: g06's app answered roll call $run over MQTT"
    fi
  ) &
fi

echo
echo "demo: the station is up; listen to the simulated traffic for a few seconds..."
sleep 8
echo "demo: starting an individual + app roll call of every guard on the merged channel"
"$ctl" --addr "$addr" rollcall start --channel merged --mode individual --mode app --watch
echo
echo "demo: done. Try: $ctl --addr $addr rollcall list   |   $ctl --addr $addr recordings search"
echo "demo: the daemon keeps running; Ctrl-C stops it."
