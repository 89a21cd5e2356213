"""The binding a parked worker receives: strict parsing and validation.

The binding is a single-line JSON object (PROTOCOL.md, "Binding JSON").
Every key is checked for type and range; unknown and duplicate keys are
refused. ``env``, ``writable_paths`` and ``rlimits`` may be left out and
default to empty; every other key is required.
"""

import json
import os
import re
import resource
from dataclasses import dataclass

from . import lines

MAX_ID = 2 ** 32 - 2
MAX_GROUPS = 65536
MAX_PATH_CHARS = 4096
MAX_ARGS = 32
MAX_TIMEOUT_MS = 3600 * 1000
MAX_RLIMIT = 2 ** 63 - 1

ENV_NAME = re.compile(r'[A-Z_][A-Z0-9_]{0,63}')
FIXED_ENV = ('PATH', 'HOME', 'USER', 'LOGNAME')
REFUSED_ENV_PREFIXES = ('LD_', 'PYTHON')

RLIMITS = {
    'as': resource.RLIMIT_AS,
    'nofile': resource.RLIMIT_NOFILE,
    'cpu': resource.RLIMIT_CPU,
    'nproc': resource.RLIMIT_NPROC,
    'fsize': resource.RLIMIT_FSIZE,
}

REQUIRED = ('user', 'uid', 'gid', 'groups', 'home', 'caller_uid',
            'caller_gid', 'args', 'fifo_open_timeout_ms')
OPTIONAL = ('env', 'writable_paths', 'rlimits')


class BindingError(ValueError):
    """The binding is invalid; the text names the key and the rule."""


@dataclass(frozen=True)
class Binding:
    """A validated binding. ``writable_paths`` are absolute and normal."""

    user: str
    uid: int
    gid: int
    groups: tuple
    home: str
    caller_uid: int
    caller_gid: int
    args: tuple
    env: dict
    fifo_open_timeout_ms: int
    writable_paths: tuple
    rlimits: dict


# A valid binding for no real user, which parked workers parse once
# ahead of time (see worker._rehearse).
SAMPLE = json.dumps({
    'user': 'nobody', 'uid': 65534, 'gid': 65534, 'groups': [65534],
    'home': '/nonexistent', 'caller_uid': 0, 'caller_gid': 0,
    'args': ['serve', '--inet', '--directory=/'],
    'env': {'LANG': 'C.UTF-8'}, 'fifo_open_timeout_ms': 10000,
    'writable_paths': ['~'], 'rlimits': {'nofile': 1024}})


def parse(text, as_root, own_uid):
    """Parse and validate binding JSON text; raise BindingError.

    ``as_root`` tells whether the template runs as root. A root template
    refuses uid 0; a template that is not root can only serve ``own_uid``.
    """
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as error:
        raise BindingError('not valid JSON: %s' % error) from None
    if not isinstance(data, dict):
        raise BindingError('binding is not a JSON object')
    _check_keys(data)
    binding = _build(data)
    _check_uid(binding, as_root, own_uid)
    return binding


def _no_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise BindingError('duplicate key %r' % key)
        result[key] = value
    return result


def _check_keys(data):
    for key in data:
        if key not in REQUIRED and key not in OPTIONAL:
            raise BindingError('unknown key %r' % key)
    for key in REQUIRED:
        if key not in data:
            raise BindingError('missing key %r' % key)


def _build(data):
    home = _path('home', data['home'])
    return Binding(
        user=_user(data['user']),
        uid=_id('uid', data['uid']),
        gid=_id('gid', data['gid']),
        groups=_groups(data['groups']),
        home=home,
        caller_uid=_id('caller_uid', data['caller_uid']),
        caller_gid=_id('caller_gid', data['caller_gid']),
        args=_args(data['args']),
        env=_env(data.get('env', {})),
        fifo_open_timeout_ms=_timeout(data['fifo_open_timeout_ms']),
        writable_paths=_writable(data.get('writable_paths', []), home),
        rlimits=_rlimits(data.get('rlimits', {})),
    )


def _check_uid(binding, as_root, own_uid):
    if as_root and binding.uid == 0:
        raise BindingError('uid 0 is refused')
    if not as_root and binding.uid != own_uid:
        raise BindingError('template runs as uid %d and cannot serve uid %d'
                           % (own_uid, binding.uid))
    if not as_root and binding.gid not in os.getresgid():
        raise BindingError('template cannot take gid %d' % binding.gid)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _id(key, value):
    if not _is_int(value) or not 0 <= value <= MAX_ID:
        raise BindingError('%s must be an integer id' % key)
    return value


def _user(value):
    if not isinstance(value, str) or not lines.USER_NAME.fullmatch(value):
        raise BindingError('user must be a user name')
    return value


def _groups(value):
    if not isinstance(value, list) or len(value) > MAX_GROUPS:
        raise BindingError('groups must be a list of ids')
    return tuple(_id('groups', group) for group in value)


def _path(key, value):
    if (not isinstance(value, str) or not value.startswith('/')
            or '\0' in value or len(value) > MAX_PATH_CHARS):
        raise BindingError('%s must be an absolute path' % key)
    return os.path.normpath(value)


def _args(value):
    if not isinstance(value, list) or len(value) > MAX_ARGS:
        raise BindingError('args must be a list of strings')
    for arg in value:
        if (not isinstance(arg, str) or '\0' in arg
                or len(arg) > lines.MAX_FIELD_BYTES):
            raise BindingError('args must be a list of strings')
    return tuple(value)


def _env(value):
    if not isinstance(value, dict):
        raise BindingError('env must be an object of strings')
    for name, text in value.items():
        if not ENV_NAME.fullmatch(name):
            raise BindingError('env name %r is not allowed' % name[:64])
        if name.startswith(REFUSED_ENV_PREFIXES):
            raise BindingError('env name %s is refused' % name)
        if not isinstance(text, str) or '\0' in text:
            raise BindingError('env %s must be a string' % name)
    return dict(value)


def _timeout(value):
    if not _is_int(value) or not 0 < value <= MAX_TIMEOUT_MS:
        raise BindingError('fifo_open_timeout_ms must be 1..%d'
                           % MAX_TIMEOUT_MS)
    return value


def _writable(value, home):
    if not isinstance(value, list):
        raise BindingError('writable_paths must be a list of paths')
    paths = []
    for path in value:
        if isinstance(path, str) and (path == '~' or path.startswith('~/')):
            path = home + path[1:]
        paths.append(_path('writable_paths', path))
    return tuple(paths)


def _rlimits(value):
    if not isinstance(value, dict):
        raise BindingError('rlimits must be an object')
    for name, limit in value.items():
        if name not in RLIMITS:
            raise BindingError('rlimit %r is unknown' % name[:32])
        if not _is_int(limit) or not 0 <= limit <= MAX_RLIMIT:
            raise BindingError('rlimit %s must be a non-negative integer'
                               % name)
    return dict(value)
