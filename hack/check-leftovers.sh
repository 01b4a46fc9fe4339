#!/usr/bin/env bash
# Fails when a test run left a control plane or Portico process running.
set -u
left=""
for p in etcd kube-apiserver portico-operator portico-forwarder; do
  if pids=$(pgrep -x "$p"); then left+="$p($(echo $pids | tr ' ' ,)) "; fi
done
if [[ -n "$left" ]]; then
  echo "leftover processes after tests: $left" >&2
  exit 1
fi
echo "no leftover etcd, kube-apiserver or Portico processes"
