"""nova-compute exactly as /usr/bin/nova-compute starts it (nova.cmd.compute.main), with tether's
pause points installed first when TETHER_NOVA_PAUSE names a folder (tether_nova_pause.py); without
it nothing differs. Started by test/support/nova.ts."""
import os
import sys

if os.environ.get('TETHER_NOVA_PAUSE'):
    import tether_nova_pause
    tether_nova_pause.install(os.environ['TETHER_NOVA_PAUSE'])

from nova.cmd.compute import main  # noqa: E402

if __name__ == '__main__':
    sys.argv[0] = 'nova-compute'
    sys.exit(main())
