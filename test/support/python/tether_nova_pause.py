"""Pause points inside nova-compute, for the kill comparison (chaos/nova-kills.ts) only.

The same protocol as tether's own pause points (src/fault-pause.ts), so one runner drives both:

    <dir>/<step>.<phase>                 armed by the runner (content: {"maxMs": N}, optional)
    <dir>/paused.<step>.<phase>.<pid>    claimed by the first call that reaches the point (an atomic
                                         rename: exactly one call pauses, a restarted process never)
    release                              the runner deletes the claimed file (or maxMs passes)

A paused call waits in an eventlet sleep: the other green threads of nova-compute (RPC, heartbeats,
periodic tasks) go on, as they would while this one is busy in that call; a SIGKILL then stops the
process with the call exactly at that point. The points wrap Nova's own functions (what the step
calls, before it and after it returns), found when their module is first imported:

    reserveDeviceName   ComputeManager.reserve_block_device_name  (the device name and the BDM, on the host)
    initializeConnection  nova.volume.cinder.API.attachment_update  (connector to Cinder, connection_info back)
    attachDisk          nova.virt.libvirt.guest.Guest.attach_device  (virDomainAttachDeviceFlags)
    completeAttachment  nova.volume.cinder.API.attachment_complete  (Cinder: in-use)
    detachDisk          nova.virt.libvirt.driver.LibvirtDriver.detach_volume  (unplug until the event, disconnect)
    deleteAttachment    nova.volume.cinder.API.attachment_delete
    destroyBdm          nova.objects.block_device.BlockDeviceMapping.destroy  (through the conductor)

Also <dir>/ready.<pid> once nova.service.Service.start has returned (RPC server consuming): how the
runner knows a restarted nova-compute is serving again.
"""
import functools
import importlib.abc
import json
import os
import sys
import time

POINTS = {
    'nova.compute.manager': [('ComputeManager', 'reserve_block_device_name', 'reserveDeviceName')],
    'nova.volume.cinder': [
        ('API', 'attachment_update', 'initializeConnection'),
        ('API', 'attachment_complete', 'completeAttachment'),
        ('API', 'attachment_delete', 'deleteAttachment'),
    ],
    'nova.virt.libvirt.guest': [('Guest', 'attach_device', 'attachDisk')],
    'nova.virt.libvirt.driver': [('LibvirtDriver', 'detach_volume', 'detachDisk')],
    'nova.objects.block_device': [('BlockDeviceMapping', 'destroy', 'destroyBdm')],
}

_dir = None


def _say(text):
    sys.stderr.write('tether-pause: %s\n' % text)
    sys.stderr.flush()


def pause(step, phase):
    armed = os.path.join(_dir, '%s.%s' % (step, phase))
    claimed = os.path.join(_dir, 'paused.%s.%s.%d' % (step, phase, os.getpid()))
    try:
        os.rename(armed, claimed)
    except OSError:
        return  # not armed, or another call claimed it first
    max_ms = 120000
    try:
        with open(claimed) as f:
            spec = json.loads(f.read() or '{}')
        if isinstance(spec.get('maxMs'), (int, float)) and spec['maxMs'] >= 0:
            max_ms = spec['maxMs']
    except (OSError, ValueError):
        pass
    _say('holding %s %s' % (step, phase))
    deadline = time.monotonic() + max_ms / 1000.0
    while os.path.exists(claimed) and time.monotonic() < deadline:
        time.sleep(0.01)  # green after nova's eventlet monkey patching
    try:
        os.unlink(claimed)
    except OSError:
        pass
    _say('released %s %s' % (step, phase))


def _wrap(fn, step):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        pause(step, 'before')
        result = fn(*args, **kwargs)
        pause(step, 'after')
        return result
    return wrapper


def _patch(module, points):
    for cls_name, attr, step in points:
        cls = getattr(module, cls_name)
        setattr(cls, attr, _wrap(cls.__dict__[attr], step))


def _patch_service(module):
    start = module.Service.start

    @functools.wraps(start)
    def started(self, *args, **kwargs):
        result = start(self, *args, **kwargs)
        open(os.path.join(_dir, 'ready.%d' % os.getpid()), 'w').close()
        return result
    module.Service.start = started


class _Finder(importlib.abc.MetaPathFinder):
    """Lets a watched module load as usual, then patches it before anyone else sees it."""

    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, name, path, target=None):
        if name not in self.patches:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module
        patch = self.patches[name]

        def exec_and_patch(module):
            exec_module(module)
            patch(module)
        spec.loader.exec_module = exec_and_patch
        return spec


def install(directory):
    global _dir
    _dir = directory
    patches = {name: functools.partial(_patch, points=points) for name, points in POINTS.items()}
    patches['nova.service'] = _patch_service
    sys.meta_path.insert(0, _Finder(patches))
