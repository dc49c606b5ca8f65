#!/usr/bin/env bash
# libfaketime (Debian's `libfaketime`), preloaded by the chaos runner's clock family into tether's
# processes to step their wall clocks (chaos/clock.ts: `npm run chaos -- --clock`). Test path only:
# production never needs it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
ensure_packages libfaketime
lib=$(dpkg-query -L libfaketime 2>/dev/null | grep -m1 '/libfaketime\.so\.1$' || true)
[[ -n "$lib" && -f "$lib" ]] || die "libfaketime is installed but libfaketime.so.1 is not in it (dpkg -L libfaketime)"
say "libfaketime $(dpkg-query -W -f='${Version}' libfaketime) present ($lib)"
