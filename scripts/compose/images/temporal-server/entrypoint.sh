#!/bin/sh
# Entry point of the local stand-in for temporalio/server, as the public image's: listen on the
# container's address unless BIND_ON_IP says otherwise; when it is a wildcard, peers reach this node
# at the container's address (TEMPORAL_BROADCAST_ADDRESS). Then all four services in this process.
set -eu
address=$(getent hosts "$(hostname)" | awk '{ print $1; exit }')
: "${BIND_ON_IP:=$address}"
export BIND_ON_IP
if [ "$BIND_ON_IP" = 0.0.0.0 ] || [ "$BIND_ON_IP" = "::0" ]; then
  : "${TEMPORAL_BROADCAST_ADDRESS:=$address}"
  export TEMPORAL_BROADCAST_ADDRESS
fi
exec temporal-server --root /etc/temporal --config config --env tether --allow-no-auth start
