"""A Cinder volume driver whose volumes are loop devices (tether's tests and benchmark only).

Each volume is a sparse raw file in $TETHER_CINDER_VOLUME_DIR behind a loop device
(`losetup --find --show`); initialize_connection answers what os-brick's "local" connector
expects, ``{"driver_volume_type": "local", "data": {"device_path": "/dev/loopN"}}``, which both
Nova's libvirt driver (LibvirtVolumeDriver) and tether (src/libvirt/disk-xml.ts) turn into
``<disk type='block'>``. So one Cinder serves volumes that a real Nova and tether can both
hot-plug into libvirt domains on this host.

Debian's Cinder ships no driver that does this without a storage system of its own (the
drivers that answer "local" are LINSTOR's and FusionStorage's); the rest of the volume
life cycle (scheduling, stats, exports) is the FakeLoggingVolumeDriver's that Cinder's own
tests use. Loaded from this file through `volume_driver = tether_loop_driver.TetherLoopDriver`
with this folder on PYTHONPATH (test/support/cinder.ts, driver 'loop').
"""
import os
import subprocess

from cinder.tests.fake_driver import FakeLoggingVolumeDriver


def _run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


class TetherLoopDriver(FakeLoggingVolumeDriver):
    def _path(self, volume):
        return os.path.join(os.environ['TETHER_CINDER_VOLUME_DIR'], 'volume-%s.raw' % volume.id)

    def _loops(self, volume):
        """The loop devices backed by this volume's file (normally one)."""
        out = _run('losetup', '--associated', self._path(volume), '--noheadings', '--output', 'NAME')
        return [line.strip() for line in out.splitlines() if line.strip()]

    def _device(self, volume):
        loops = self._loops(volume)
        if loops:
            return loops[0]
        return _run('losetup', '--find', '--show', self._path(volume))

    def create_volume(self, volume):
        update = super(TetherLoopDriver, self).create_volume(volume) or {}
        os.makedirs(os.environ['TETHER_CINDER_VOLUME_DIR'], exist_ok=True)
        with open(self._path(volume), 'wb') as f:
            f.truncate(int(volume.size) * 1024 ** 3)
        update['provider_location'] = self._device(volume)
        return update

    def delete_volume(self, volume):
        if os.path.exists(self._path(volume)):
            for loop in self._loops(volume):
                _run('losetup', '--detach', loop)
            os.unlink(self._path(volume))

    def _update_volume_stats(self):
        super(TetherLoopDriver, self)._update_volume_stats()
        for pool in self._stats['pools']:
            pool['multiattach'] = True  # a block device can be shared (libvirt <shareable/>)

    def initialize_connection(self, volume, connector):
        info = super(TetherLoopDriver, self).initialize_connection(volume, connector)
        return {
            'driver_volume_type': 'local',
            'data': {
                'device_path': self._device(volume),
                'volume_id': volume.id,
                'name': 'volume-%s' % volume.id,
                'access_mode': info['data'].get('access_mode', 'rw'),
                'encrypted': False,
                'discard': False,
            },
        }
