#!/usr/bin/env bash
# Healthy when the S3 gateway answers and the volume server has joined the master
# (until then, reads of stored objects fail for a second or two after a start).
# bash's /dev/tcp, so the image needs no curl.
get() {  # $1 = port, $2 = path
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
  timeout 4 cat <&3
  exec 3<&-
}
get 8333 /healthz | head -n 1 | grep -q ' 200 ' || exit 1
get 9333 /dir/status | grep -q '"DataNodes":\[{"Url":"127.0.0.1:8080"' || exit 1
