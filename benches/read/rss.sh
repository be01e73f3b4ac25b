#!/usr/bin/env bash
# Sample a process's resident set every 0.2 s until stopped; print the peak (MiB) on exit.
# Usage: rss.sh PID > peak.txt &  ...  kill $!
pid=$1; peak=0
trap 'echo "$((peak / 1024))"; exit 0' TERM INT
while kill -0 "$pid" 2>/dev/null; do
  kb=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)
  [ "${kb:-0}" -gt "$peak" ] && peak=$kb
  sleep 0.2
done
echo "$((peak / 1024))"
