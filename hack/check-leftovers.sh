#!/usr/bin/env bash
# Fails when a test run left a control plane or Portico process running.
# (pgrep -x matches the 15-character comm, so the long names match by path.)
set -u
left=""
for p in '(^|/)etcd( |$)' '(^|/)kube-apiserver( |$)' '(^|/)kube-controller-manager( |$)' '(^|/)kwok( |$)' '(^|/)portico-operator( |$)' '(^|/)portico-forwarder( |$)'; do
  if pids=$(pgrep -f -- "$p"); then left+="$(echo $pids | tr ' ' ,):$p "; fi
done
if [[ -n "$left" ]]; then
  echo "leftover processes after tests: $left" >&2
  pgrep -af -- 'etcd|kube-apiserver|kube-controller-manager|kwok|portico-' >&2
  exit 1
fi
echo "no leftover etcd, kube-apiserver, kube-controller-manager, kwok or Portico processes"
