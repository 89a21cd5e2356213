"""A Breezy transport decorator that writes only below allowed paths.

``brz serve --allow-writes`` lets a session write wherever the user may.
prefork narrows that: a write goes through only when its local path, with
symbolic links resolved, is one of the binding's ``writable_paths`` or
below one. Reads are never restricted here (the chroot and the file
system's permissions apply as usual). A refused write raises
``PermissionDenied``, which the smart protocol carries to the client.

The decorator must wrap a local (``file://``) transport. Clones keep the
allowed paths; a decorator built from a URL alone (for example through
``get_transport``) allows no writes at all, so the policy fails closed.
"""

import os

from breezy import errors, transport
from breezy.transport import decorator

URL_PREFIX = 'prefork-writable+'
REFUSAL = 'outside the writable paths of this session'


class WritePolicyTransportDecorator(decorator.TransportDecorator):
    """Pass reads through; let writes through only below allowed roots."""

    def __init__(self, url, _decorated=None, _from_transport=None,
                 writable_roots=()):
        """Decorate; ``writable_roots`` are absolute local paths."""
        super().__init__(url, _decorated, _from_transport)
        if _from_transport is not None:
            self._roots = _from_transport._roots
        else:
            self._roots = tuple(_resolve(root) for root in writable_roots)

    @classmethod
    def decorate(cls, local_transport, writable_roots):
        """Return ``local_transport`` wrapped with the given roots."""
        return cls(URL_PREFIX + local_transport.base, local_transport,
                   writable_roots=writable_roots)

    @classmethod
    def _get_url_prefix(cls):
        return URL_PREFIX

    def may_write(self, relpath):
        """Return True when ``relpath`` lies at or below an allowed root."""
        path = _resolve(self._decorated.local_abspath(relpath))
        for root in self._roots:
            if path == root or path.startswith(root.rstrip('/') + '/'):
                return True
        return False

    def _check(self, *relpaths):
        for relpath in relpaths:
            if not self.may_write(relpath):
                raise errors.PermissionDenied(
                    self._decorated.local_abspath(relpath), REFUSAL)

    def is_readonly(self):
        """Read-only when no root is allowed at all."""
        return not self._roots

    def append_file(self, relpath, f, mode=None):
        """See Transport.append_file."""
        self._check(relpath)
        return super().append_file(relpath, f, mode=mode)

    def append_bytes(self, relpath, bytes, mode=None):
        """See Transport.append_bytes."""
        self._check(relpath)
        return super().append_bytes(relpath, bytes, mode=mode)

    def put_file(self, relpath, f, mode=None):
        """See Transport.put_file."""
        self._check(relpath)
        return super().put_file(relpath, f, mode)

    def put_bytes(self, relpath, raw_bytes, mode=None):
        """See Transport.put_bytes."""
        self._check(relpath)
        return super().put_bytes(relpath, raw_bytes, mode)

    def mkdir(self, relpath, mode=None):
        """See Transport.mkdir."""
        self._check(relpath)
        return super().mkdir(relpath, mode)

    def open_write_stream(self, relpath, mode=None):
        """See Transport.open_write_stream."""
        self._check(relpath)
        return super().open_write_stream(relpath, mode=mode)

    def rename(self, rel_from, rel_to):
        """See Transport.rename."""
        self._check(rel_from, rel_to)
        return super().rename(rel_from, rel_to)

    def delete(self, relpath):
        """See Transport.delete."""
        self._check(relpath)
        return super().delete(relpath)

    def delete_tree(self, relpath):
        """See Transport.delete_tree."""
        self._check(relpath)
        return super().delete_tree(relpath)

    def rmdir(self, relpath):
        """See Transport.rmdir."""
        self._check(relpath)
        return super().rmdir(relpath)

    def lock_write(self, relpath):
        """See Transport.lock_write."""
        self._check(relpath)
        return super().lock_write(relpath)

    def get_smart_medium(self):
        """A local transport has no smart medium; never bypass us."""
        raise errors.NoSmartMedium(self)


def _resolve(path):
    return os.path.realpath(os.path.normpath(path))


def register():
    """Make the URL prefix known to Breezy (once per process)."""
    transport.register_transport(URL_PREFIX, WritePolicyTransportDecorator)
