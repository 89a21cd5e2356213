"""A worker's life in the forked child: park, bind, serve, exit.

``run`` is called in the child right after ``fork()`` and never returns
into the template's code: every path ends in ``os._exit``. The order of
the binding steps is the security design (see DESIGN.md): validate, set
limits and hand the directory over while still root, drop and verify,
clear the environment, report ``bound``, close every inherited fd, let
the service prepare the session, and only then open the FIFOs, so no
client byte is read before the drop.
"""

import os
import resource
import signal
import socket
import stat
import sys
from dataclasses import dataclass

from . import binding as binding_mod
from . import lines
from . import privileges
from .log import ERROR, INFO, WARNING, one_line, worker_log

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BIND_FAILED = 70
EXIT_FIFO_TIMEOUT = 75

FIFO_NAMES = ('stdin', 'stdout', 'stderr')
FIFO_FLAGS = {'stdin': os.O_RDONLY, 'stdout': os.O_WRONLY,
              'stderr': os.O_WRONLY}
SESSION_PATH = '/usr/bin:/bin'
SESSION_UMASK = 0o022
MAX_REASON_CHARS = 300

# Taken once in the template, before any rlimit of a binding lowers it.
MAX_FD = os.sysconf('SC_OPEN_MAX')


@dataclass
class Park:
    """What the template hands to a freshly forked child."""

    worker_id: str
    sock: socket.socket
    worker_root: str
    service: object
    template_pid: int
    as_root: bool
    inherited: list


@dataclass(frozen=True)
class Session:
    """A bound session, as a service sees it."""

    worker_id: str
    binding: binding_mod.Binding

    def log(self, level, message):
        """Log one line to the session's stderr (after the FIFOs)."""
        worker_log(level, self.worker_id, self.binding.user, message)


class _FifoTimeout(Exception):
    pass


def run(park):
    """Live as a worker in the forked child; exit, never return."""
    status = EXIT_FAILED
    try:
        status = _lifecycle(park)
    except BaseException as error:
        worker_log(ERROR, park.worker_id, None,
                   'worker failed: %s' % _describe(error))
    finally:
        _exit(status)


def _lifecycle(park):
    _leave_template(park)
    directory = _park(park)
    if directory is None:
        return EXIT_FAILED
    binding = _receive_binding(park)
    if binding is None:
        return EXIT_BIND_FAILED
    if not _bind(park, binding, directory):
        return EXIT_BIND_FAILED
    return _serve(park, binding, directory)


def _leave_template(park):
    # Signals: the template's handlers only poke its wake-up pipe, which
    # we must neither write to nor share.
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT,
                   signal.SIGALRM):
        signal.signal(signum, signal.SIG_DFL)

    # A parked worker dies with the template. The kernel clears this on
    # the uid change at bind; we clear it explicitly there too.
    privileges.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != park.template_pid:
        _exit(EXIT_FAILED)
    os.setsid()

    # fd 0 is the template's command pipe from preforkd and must not be
    # readable by a worker; fd 1 is the template's log too, but only fd 2
    # stays, as our log until we bind. The events pipe is closed below
    # with the rest.
    devnull = os.open('/dev/null', os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)

    # Forget the template's socket objects without closing them through
    # Python, so a later garbage collection cannot close a reused fd
    # number; then close every fd but our own socket end.
    for other in park.inherited:
        other.detach()
    keep = park.sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, MAX_FD)


def _park(park):
    directory = os.path.join(park.worker_root, park.worker_id)
    try:
        _make_directory(directory)
    except OSError as error:
        reason = 'cannot create %s: %s' % (directory, error.strerror)
        worker_log(ERROR, park.worker_id, None, reason)
        _send(park.sock, 'fork-failed', reason)
        return None
    _rehearse(park)
    _send(park.sock, 'parked')
    return directory


def _rehearse(park):
    # Only a matter of speed. A forked child pays a copy-on-write fault
    # for each page of the template's heap it first touches; parsing the
    # first binding alone costs over a millisecond that way. A parked
    # worker has time to spare, so it walks the hand-out path once with
    # a sample binding, and the service's session set-up if it has one.
    # A failed rehearsal is logged and the worker is parked all the same.
    rehearse = getattr(park.service, 'rehearse', lambda: None)
    try:
        binding_mod.parse(binding_mod.SAMPLE, True, os.getuid())
        privileges.capability_sets()
        rehearse()
    except Exception as error:
        worker_log(WARNING, park.worker_id, None,
                   'rehearsal failed: %s' % _describe(error))


def _make_directory(directory):
    os.mkdir(directory, 0o700)
    os.chmod(directory, 0o700)
    for name in FIFO_NAMES:
        path = os.path.join(directory, name)
        os.mkfifo(path, 0o600)
        os.chmod(path, 0o600)


def _receive_binding(park):
    message = park.sock.recv(lines.MAX_LINE_BYTES + 1)
    if not message:
        # The template closed our socket without a binding.
        _exit(EXIT_FAILED)
    try:
        text = message.decode('utf-8')
        return binding_mod.parse(text, park.as_root, os.getuid())
    except (UnicodeDecodeError, binding_mod.BindingError) as error:
        _refuse(park, None, 'invalid binding: %s' % error)
        return None


def _bind(park, binding, directory):
    user = binding.user
    try:
        _set_rlimits(binding)
        _hand_over_directory(binding, directory, park.as_root)
        privileges.drop(binding.uid, binding.gid, binding.groups,
                        change_groups=park.as_root)
        privileges.set_parent_death_signal(0)
    except privileges.DropFailed as error:
        _refuse(park, user, 'privilege drop failed: %s' % error)
        return False
    except (OSError, ValueError) as error:
        # resource.setrlimit reports EPERM and EINVAL as ValueError.
        reason = getattr(error, 'strerror', None) or str(error)
        _refuse(park, user, 'binding failed: %s' % reason)
        return False

    # From here on we are the user for good.
    _set_environment(binding)
    _send(park.sock, 'bound')
    park.sock.close()
    worker_log(INFO, park.worker_id, user,
               'bound to uid %d gid %d, waiting for FIFOs'
               % (binding.uid, binding.gid))
    return True


def _set_rlimits(binding):
    for name, limit in sorted(binding.rlimits.items()):
        resource.setrlimit(binding_mod.RLIMITS[name], (limit, limit))


def _hand_over_directory(binding, directory, as_root):
    # A trusted frontend (another uid) reaches the FIFOs through its own
    # group; otherwise only the user (and root) may.
    shared = binding.caller_uid not in (0, binding.uid)
    if not as_root and not shared:
        return
    group = binding.caller_gid if shared else binding.gid
    dir_mode, fifo_mode = (0o710, 0o660) if shared else (0o700, 0o600)
    owner = binding.uid if as_root else -1
    for name in FIFO_NAMES:
        path = os.path.join(directory, name)
        os.chown(path, owner, group, follow_symlinks=False)
        os.chmod(path, fifo_mode, follow_symlinks=False)
    os.chown(directory, owner, group, follow_symlinks=False)
    os.chmod(directory, dir_mode)


def _set_environment(binding):
    os.environ.clear()
    os.environ.update(binding.env)
    os.environ.update(PATH=SESSION_PATH, HOME=binding.home,
                      USER=binding.user, LOGNAME=binding.user)
    try:
        os.chdir(binding.home)
    except OSError:
        os.chdir('/')
    os.umask(SESSION_UMASK)


def _refuse(park, user, reason):
    worker_log(WARNING, park.worker_id, user, reason)
    _send(park.sock, 'bind-failed', reason)


def _serve(park, binding, directory):
    # Nothing of the template's may stay open: not its log, not our
    # socket, nothing a library opened before the fork.
    os.closerange(3, MAX_FD)
    session = Session(park.worker_id, binding)
    runner = _prepare(park.service, session)
    try:
        fds = _open_fifos(directory, binding.fifo_open_timeout_ms)
    except _FifoTimeout:
        worker_log(WARNING, park.worker_id, binding.user,
                   'FIFOs not opened within %d ms, exiting'
                   % binding.fifo_open_timeout_ms)
        return EXIT_FIFO_TIMEOUT
    _attach(fds)
    _unlink_fifos(directory)
    return _run_session(session, runner)


def _prepare(service, session):
    # A failure here is reported once the session's stderr is open.
    try:
        return service.prepare(session)
    except Exception as error:
        def fail(error=error):
            raise error
        return fail


def _on_alarm(signum, frame):
    raise _FifoTimeout()


def _open_fifos(directory, timeout_ms):
    # The same order as the client: stdin, stdout, stderr. Each open
    # blocks until the peer opens its end; the timer bounds them all.
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_ms / 1000.0)
    try:
        fds = []
        for name in FIFO_NAMES:
            path = os.path.join(directory, name)
            flags = FIFO_FLAGS[name] | os.O_NOFOLLOW | os.O_CLOEXEC
            fds.append(os.open(path, flags))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    for fd in fds:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise OSError('session file is not a FIFO')
    return fds


def _attach(fds):
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)


def _unlink_fifos(directory):
    for name in FIFO_NAMES:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass


def _run_session(session, runner):
    try:
        status = runner()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else EXIT_FAILED
    except BaseException as error:
        session.log(ERROR, 'session failed: %s' % _describe(error))
        status = EXIT_FAILED
    if not isinstance(status, int) or not 0 <= status <= 255:
        status = EXIT_FAILED
    return status


def _send(sock, verb, reason=None):
    message = verb
    if reason is not None:
        message += ' ' + one_line(reason, MAX_REASON_CHARS)
    sock.send(message.encode('utf-8', 'replace'))


def _describe(error):
    text = str(error)
    name = type(error).__name__
    return '%s: %s' % (name, text) if text else name


def _exit(status):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(status)
