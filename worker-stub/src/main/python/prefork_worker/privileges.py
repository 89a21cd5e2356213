"""Privilege drop and its verification, plus the prctl calls we need.

The drop is the security core of a worker: ``setgroups``, ``setresgid``,
``setresuid`` (in that order, because once the uid is gone the process may
no longer change its groups), then a verification that reads the ids back
and proves that root cannot be regained, then no-new-privileges so that no
later ``execve`` of a set-id program can raise them again, and finally
the process is made non-dumpable so the user cannot read its memory
(which is the template's) from outside.
"""

import ctypes
import errno
import os

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


class DropFailed(Exception):
    """The privilege drop or its verification failed; text says which."""


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    """Call prctl(2); return its result or raise OSError."""
    result = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, 'prctl(%d): %s' % (option, os.strerror(code)))
    return result


def set_parent_death_signal(signum):
    """Ask the kernel to send ``signum`` when our parent dies (0: none)."""
    prctl(PR_SET_PDEATHSIG, signum)


def parent_death_signal():
    """Return the current parent-death signal (0 when none is set)."""
    value = ctypes.c_int(0)
    prctl(PR_GET_PDEATHSIG, ctypes.addressof(value))
    return value.value


def dumpable():
    """Return the dumpable flag (0 after a uid change, by default)."""
    return prctl(PR_GET_DUMPABLE)


def set_no_new_privs():
    """Set no-new-privileges; it can never be cleared again."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def no_new_privs():
    """Return 1 when no-new-privileges is set, else 0."""
    return prctl(PR_GET_NO_NEW_PRIVS)


def capability_sets():
    """Return the capability masks of /proc/self/status as integers."""
    # Bytes, not text: a text file would look its codec up, and in a
    # freshly bound worker that import costs a millisecond of disk reads.
    masks = {}
    with open('/proc/self/status', 'rb') as status:
        for line in status:
            name, _, value = line.partition(b':')
            if name in (b'CapInh', b'CapPrm', b'CapEff', b'CapAmb'):
                masks[name.decode()] = int(value.strip(), 16)
    return masks


def drop(uid, gid, groups, change_groups=True):
    """Drop to ``uid``/``gid``/``groups`` for good, verify, set NNP.

    ``change_groups`` is False when we are not root: then we cannot call
    setgroups and only prove that we already are the target. Raises
    DropFailed with a short reason on any failure.
    """
    try:
        if change_groups:
            os.setgroups(list(groups))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as error:
        raise DropFailed('changing ids failed: %s'
                         % errno.errorcode.get(error.errno, error.errno))
    verify(uid, gid, groups if change_groups else None)
    _set_and_check_no_new_privs()
    _set_and_check_not_dumpable()


def verify(uid, gid, groups=None):
    """Prove the drop: ids, groups, no capabilities, no way back to root."""
    if os.getresuid() != (uid, uid, uid):
        raise DropFailed('uids are %r, not all %d' % (os.getresuid(), uid))
    if os.getresgid() != (gid, gid, gid):
        raise DropFailed('gids are %r, not all %d' % (os.getresgid(), gid))
    if groups is not None and set(os.getgroups()) != set(groups):
        raise DropFailed('supplementary groups differ from the binding')
    _check_no_capabilities()
    _check_root_unreachable(uid, gid)


def _check_no_capabilities():
    masks = capability_sets()
    for name in ('CapPrm', 'CapEff', 'CapAmb'):
        if masks.get(name, 0) != 0:
            raise DropFailed('%s is not empty after the drop' % name)


def _check_root_unreachable(uid, gid):
    # Each attempt must fail with EPERM; success means we are root again,
    # and the caller exits without serving.
    attempts = [('setuid(0)', lambda: os.setuid(0)),
                ('setresuid(0,0,0)', lambda: os.setresuid(0, 0, 0))]
    if gid != 0:
        attempts.append(('setresgid(0,0,0)',
                         lambda: os.setresgid(0, 0, 0)))
    if uid == 0:
        raise DropFailed('target uid is 0')
    for name, attempt in attempts:
        try:
            attempt()
        except PermissionError:
            continue
        raise DropFailed('%s succeeded after the drop' % name)


def _set_and_check_not_dumpable():
    # The worker's memory is the template's; the user must not be able
    # to read it with ptrace or /proc/PID/mem, whatever fs.suid_dumpable
    # says.
    try:
        prctl(PR_SET_DUMPABLE, 0)
        value = dumpable()
    except OSError as error:
        raise DropFailed('clearing dumpable failed: %s' % error.strerror)
    if value != 0:
        raise DropFailed('dumpable reads %d after clearing it' % value)


def _set_and_check_no_new_privs():
    try:
        set_no_new_privs()
        value = no_new_privs()
    except OSError as error:
        raise DropFailed('no_new_privs failed: %s' % error.strerror)
    if value != 1:
        raise DropFailed('no_new_privs reads %d after setting it' % value)
