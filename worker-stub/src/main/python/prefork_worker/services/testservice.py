"""The built-in ``test`` service: small probes of a bound worker.

It imports nothing beyond the standard library. Session arguments:

- ``echo``: copy stdin to stdout until end of input, exit 0.
- ``exit N``: exit with status N (0..255).
- ``kill SIG``: kill ourselves with signal SIG (name or number).
- ``stderr TEXT...``: write the text and a newline to stderr, exit 0.
- ``sleep MS``: sleep, exit 0.
- ``whoami``: print one JSON line describing the process (ids, groups,
  cwd, environment, open fds, no_new_privs, dumpable, what
  ``setuid(0)`` does).
- ``read PATH``: try to read a file; print ``ok <bytes>`` or
  ``error <ERRNO>``.
- ``signal PID SIG``: try to send a signal; print ``ok`` or
  ``error <ERRNO>``.

Anything else exits 2 with a message on stderr.
"""

import errno
import json
import os
import signal
import time

from .. import privileges
from ..log import write_all

EXIT_USAGE = 2
CHUNK_BYTES = 65536


def load(home):
    """Nothing to import: the test service is the standard library."""


def warm(scratch_dir):
    """Nothing to warm; run one whoami-like probe for symmetry."""
    _describe_process()


def prepare(session):
    """Return the runner of the command in ``session.binding.args``."""
    return lambda: run(list(session.binding.args))


def run(args):
    """Run one test-service command; return its exit status."""
    if not args or args[0] not in COMMANDS:
        return _usage('unknown command: %s' % ' '.join(args)[:200])
    command, arity = COMMANDS[args[0]]
    if arity is not None and len(args) - 1 != arity:
        return _usage('%s takes %d argument(s)' % (args[0], arity))
    try:
        return command(*args[1:])
    except ValueError as error:
        return _usage('%s: %s' % (args[0], error))


def _usage(message):
    _print(2, 'test service: %s' % message)
    return EXIT_USAGE


def _print(fd, text):
    write_all(fd, (text + '\n').encode('utf-8'))


def _echo():
    while True:
        data = os.read(0, CHUNK_BYTES)
        if not data:
            return 0
        write_all(1, data)


def _exit(code):
    status = int(code)
    if not 0 <= status <= 255:
        raise ValueError('status must be 0..255')
    return status


def _kill(name):
    signum = _signal_number(name)
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        # Python ignores some signals (SIGPIPE); make the default fatal.
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(1)
    return 1


def _stderr(*words):
    _print(2, ' '.join(words))
    return 0


def _sleep(milliseconds):
    time.sleep(int(milliseconds) / 1000.0)
    return 0


def _whoami():
    _print(1, json.dumps(_describe_process(), sort_keys=True))
    return 0


def _read(path):
    try:
        with open(path, 'rb') as source:
            size = len(source.read())
    except OSError as error:
        _print(1, 'error %s' % _errno_name(error))
        return 0
    _print(1, 'ok %d' % size)
    return 0


def _signal(pid, name):
    try:
        os.kill(int(pid), _signal_number(name))
    except OSError as error:
        _print(1, 'error %s' % _errno_name(error))
        return 0
    _print(1, 'ok')
    return 0


def _signal_number(name):
    if name.isdigit():
        return int(name)
    name = name.upper()
    if not name.startswith('SIG'):
        name = 'SIG' + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError('unknown signal %s' % name) from None


def _errno_name(error):
    return errno.errorcode.get(error.errno, str(error.errno))


def _describe_process():
    return {
        'pid': os.getpid(),
        'ppid': os.getppid(),
        'resuid': list(os.getresuid()),
        'resgid': list(os.getresgid()),
        'groups': sorted(os.getgroups()),
        'cwd': os.getcwd(),
        'environ': dict(os.environ),
        'fds': _open_fds(),
        'no_new_privs': privileges.no_new_privs(),
        'parent_death_signal': privileges.parent_death_signal(),
        'dumpable': privileges.dumpable(),
        'capabilities': privileges.capability_sets(),
        'umask': _umask(),
        'setuid0': _try_setuid0(),
    }


def _open_fds():
    # listdir itself holds a directory fd while it reads; keep only the
    # fds still open once it is done.
    listed = sorted(int(name) for name in os.listdir('/proc/self/fd'))
    open_fds = []
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:
            continue
        open_fds.append(fd)
    return open_fds


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _try_setuid0():
    try:
        os.setuid(0)
    except OSError as error:
        return 'error %s' % _errno_name(error)
    return 'ok'


COMMANDS = {
    'echo': (_echo, 0),
    'exit': (_exit, 1),
    'kill': (_kill, 1),
    'stderr': (_stderr, None),
    'sleep': (_sleep, 1),
    'whoami': (_whoami, 0),
    'read': (_read, 1),
    'signal': (_signal, 2),
}
