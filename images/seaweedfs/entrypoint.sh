#!/bin/sh
# Entry point of mlops/seaweedfs: `weed server` with master, volume and filer on
# loopback only and the S3 gateway (port 8333) on all addresses.
# The S3 gateway's gRPC port (18333) has to listen where S3 does, and it takes IAM
# updates (PutIdentity...) from anyone who reaches it. So every gRPC link gets mutual
# TLS with a CA made at each start in /run/seaweedfs and never written elsewhere: only
# the processes of this container hold a client certificate.
set -eu
tls=/run/seaweedfs
if [ "${1:-}" = server ]; then
  mkdir -p /data "$tls"
  chmod 0700 "$tls"
  cd "$tls"
  rm -f ./*.pem ./*.srl
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj /CN=seaweedfs-local-ca -keyout ca.key.pem -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=seaweedfs -keyout key.pem -out req.pem 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
  openssl x509 -req -in req.pem -CA ca.pem -CAkey ca.key.pem -CAcreateserial -days 3650 \
    -extfile ext.cnf -out cert.pem 2>/dev/null
  rm -f req.pem ca.key.pem ca.srl ext.cnf
  # weed reads security.toml from its working directory first.
  {
    printf '[grpc]\nca = "%s/ca.pem"\n' "$tls"
    for part in master volume filer s3 client; do
      printf '[grpc.%s]\ncert = "%s/cert.pem"\nkey = "%s/key.pem"\n' "$part" "$tls" "$tls"
    done
  } >security.toml
fi
exec weed "$@"
