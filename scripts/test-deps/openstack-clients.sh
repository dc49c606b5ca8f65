#!/usr/bin/env bash
# The OpenStack command-line clients and SDK the API tests drive tether with
# (test/openstack-clients.test.ts, test/tenancy.test.ts, test/cinder.test.ts).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
PACKAGES=(python3-openstackclient python3-novaclient python3-openstacksdk python3-cinderclient)
ensure_packages "${PACKAGES[@]}"
say "python3-openstackclient $(dpkg-query -W -f='${Version}' python3-openstackclient), nova, openstacksdk and cinder clients present"
