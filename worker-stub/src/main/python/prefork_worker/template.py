"""The template: start-up, then one loop that forks and reaps workers.

Start-up (``main``): parse arguments, tie our life to preforkd's
(parent-death signal), reduce the environment, import the service once,
warm it, freeze the heap, and print ``ready``.

The loop (``Template.run``) waits on one selector for three kinds of
input: commands on stdin, a wake-up pipe written by the signal machinery
for SIGCHLD and SIGTERM (the handlers themselves do nothing), and one
socket per worker that is not yet bound. Bad input is logged and ignored;
the loop never dies of it. Commands naming an unknown worker, or a
``fork`` of an id already in use, are logged as errors and get no event.
Every ``fork`` that forked is answered by ``parked`` or ``fork-failed``
(unless the worker was stopped first), every ``bind`` sent to a parked
worker by ``bound`` or ``bind-failed``, even when the worker died without
a word; ``exited`` always comes last.

Exit codes: 0 normal, 2 bad arguments, 4 service import failed, 5 warm-up
failed, 1 anything else (including a parent that died before we started).
"""

import argparse
import gc
import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass

from . import lines, privileges, services, worker
from .log import DEBUG, ERROR, INFO, WARNING, one_line, template_log, \
    write_all

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_IMPORT_FAILED = 4
EXIT_WARM_FAILED = 5

TEMPLATE_PATH = '/usr/bin:/bin'
MAX_STARTUP_MS = 600 * 1000
READ_CHUNK_BYTES = 65536
MAX_REASON_CHARS = 300
RM = '/bin/rm'
RM_TIMEOUT_S = 60

STARTING = 'starting'
PARKED = 'parked'
BINDING = 'binding'
BOUND = 'bound'
STOPPING = 'stopping'
FAILED = 'failed'


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing usage."""

    def error(self, message):
        raise _ArgumentError(message)


@dataclass
class WorkerRecord:
    """The template's view of one forked worker."""

    worker_id: str
    pid: int
    sock: socket.socket
    directory: str
    state: str = STARTING


def main(argv, ppid_at_start):
    """Run the template; return its exit code.

    The ``warm-ms`` of ``ready`` counts from here (the template's start)
    to ready: importing the service plus warming it.
    """
    started = time.monotonic()
    try:
        options = _parse_arguments(argv)
        worker_root = _check_worker_root(options.worker_dir)
    except _ArgumentError as error:
        template_log(ERROR, 'bad arguments: %s' % error)
        return EXIT_BAD_ARGUMENTS

    # Die with preforkd. If it died before the signal was armed, our
    # parent has already changed and nobody would ever reap our workers.
    privileges.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != ppid_at_start:
        template_log(ERROR, 'parent died before start-up, exiting')
        return EXIT_FAILED
    os.umask(0o077)
    events_fd = _reserve_stdout()

    status, service = _start_service(options)
    if status != EXIT_OK:
        return status
    warm_ms = int((time.monotonic() - started) * 1000)
    template = Template(service, worker_root, events_fd)
    template.emit('ready', str(os.getpid()), options.service, str(warm_ms))
    template_log(INFO, 'ready: service %s imported and warmed in %d ms'
                 % (options.service, warm_ms))
    return template.run()


def _reserve_stdout():
    """Keep stdout for events only; return the fd events go to.

    Whatever a library prints, from Python or C, lands on fd 1: point
    fd 1 at the log and write events to a private copy of the pipe. The
    copy is close-on-exec and no worker keeps it.
    """
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return events_fd


def _parse_arguments(argv):
    parser = _Parser(prog='prefork_template.py', add_help=False)
    parser.add_argument('--service', required=True,
                        choices=sorted(services.SERVICES))
    parser.add_argument('--worker-dir', required=True)
    parser.add_argument('--warm-dir', required=True)
    parser.add_argument('--startup-ms', type=int, default=0)
    parser.add_argument('--no-warm', action='store_true',
                        help='skip warm-up (for measuring its effect)')
    options = parser.parse_args(argv)
    if not 0 <= options.startup_ms <= MAX_STARTUP_MS:
        raise _ArgumentError('--startup-ms must be 0..%d' % MAX_STARTUP_MS)
    for name in ('worker_dir', 'warm_dir'):
        if not os.path.isabs(getattr(options, name)):
            raise _ArgumentError('--%s must be an absolute path'
                                 % name.replace('_', '-'))
    return options


def _check_worker_root(path):
    # Every worker directory lives here; if anyone but us could write
    # here, they could swap a worker's directory for their own.
    _check_field_path(path)
    try:
        os.mkdir(path, 0o711)
        os.chmod(path, 0o711)
    except FileExistsError:
        pass
    except OSError as error:
        raise _ArgumentError('cannot create --worker-dir %s: %s'
                             % (path, error.strerror)) from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise _ArgumentError('--worker-dir %s is not a directory' % path)
    if info.st_uid != os.geteuid():
        raise _ArgumentError('--worker-dir %s is not owned by uid %d'
                             % (path, os.geteuid()))
    if info.st_mode & 0o022:
        raise _ArgumentError('--worker-dir %s is writable by others'
                             % path)
    return os.path.normpath(path)


def _check_field_path(path):
    # Worker directories travel as one field of the parked event.
    longest = os.path.join(path, 'w' + '0' * 12)
    try:
        lines.check_field(longest)
        lines.decode(longest.encode('utf-8'))
    except lines.BadLine as error:
        raise _ArgumentError('--worker-dir cannot be sent in events: %s'
                             % error) from None
    if ' ' in path:
        raise _ArgumentError('--worker-dir cannot be sent in events: '
                             'it holds a space')


def _start_service(options):
    """Import and warm the service; return (exit status, service)."""
    try:
        scratch = _make_scratch(options.warm_dir)
    except OSError as error:
        template_log(ERROR, 'warm-up failed: cannot use --warm-dir %s: %s'
                     % (options.warm_dir, error.strerror))
        return EXIT_WARM_FAILED, None
    try:
        return _import_and_warm(options, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _make_scratch(warm_dir):
    # The template keeps nothing a worker may not see: an environment of
    # our own and an empty home, so no root configuration, credentials or
    # per-user plugins are ever loaded.
    os.makedirs(warm_dir, 0o700, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix='template-%d-' % os.getpid(),
                               dir=warm_dir)
    home = os.path.join(scratch, 'home')
    os.mkdir(home, 0o700)
    os.environ.clear()
    os.environ.update(PATH=TEMPLATE_PATH, HOME=home)
    return scratch


def _import_and_warm(options, scratch):
    imported_at = time.monotonic()
    try:
        service = services.load(options.service, options.startup_ms,
                                os.environ['HOME'])
    except Exception as error:
        template_log(ERROR, 'service %s import failed: %s: %s'
                     % (options.service, type(error).__name__, error))
        return EXIT_IMPORT_FAILED, None
    warmed_at = time.monotonic()
    if not options.no_warm:
        try:
            service.warm(scratch)
        except Exception as error:
            template_log(ERROR, 'warm-up failed: %s: %s'
                         % (type(error).__name__, error))
            return EXIT_WARM_FAILED, None
    done_at = time.monotonic()
    template_log(INFO, 'service %s imported in %d ms, warm-up %s in %d ms'
                 % (options.service, (warmed_at - imported_at) * 1000,
                    'skipped' if options.no_warm else 'done',
                    (done_at - warmed_at) * 1000))

    # Children share the warmed heap copy-on-write; freezing keeps the
    # collector from touching (and so copying) those pages in each child.
    gc.collect()
    gc.freeze()
    return EXIT_OK, service


class Template:
    """The fork-and-reap loop; one instance per template process."""

    def __init__(self, service, worker_root, events_fd):
        self.service = service
        self.events_fd = events_fd
        self.worker_root = worker_root
        self.as_root = os.geteuid() == 0
        self.workers = {}
        self.by_pid = {}
        self.reader = lines.LineReader()
        self.chunk = bytearray(READ_CHUNK_BYTES)
        # A poll selector holds no kernel fd that a forked child could
        # inherit (an epoll selector would).
        self.selector = selectors.PollSelector()
        self.stopping = False
        self.wake_r = self.wake_w = -1

    def emit(self, *fields):
        """Write one event line to stdout (preforkd) at once."""
        line = ' '.join(fields) + '\n'
        try:
            write_all(self.events_fd, line.encode('utf-8'))
        except BrokenPipeError:
            template_log(ERROR, 'preforkd closed our stdout, stopping')
            self.stopping = True

    def run(self):
        """Serve commands until stdin ends or SIGTERM; return 0."""
        self._install_signals()
        self.selector.register(0, selectors.EVENT_READ, self._on_stdin)
        self.selector.register(self.wake_r, selectors.EVENT_READ,
                               self._on_wake)
        while not self.stopping:
            for key, _ in self.selector.select():
                key.data(key)
        self._shut_down()
        return EXIT_OK

    def _install_signals(self):
        # The handlers only exist so that the signal writes its number to
        # the wake-up pipe; all work happens in the loop.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, _wake_only)

    # -- input from preforkd ------------------------------------------------

    def _on_stdin(self, key):
        # Into a buffer of our own, not os.read: that would make a bytes
        # object per read, and a binding left in freed memory is inherited
        # by every later worker. The buffer is zeroed once it is handled.
        try:
            count = os.readv(0, [self.chunk])
        except OSError as error:
            template_log(ERROR, 'reading stdin failed: %s' % error.strerror)
            count = 0
        if not count:
            self._on_end_of_input()
            return
        try:
            for raw in self.reader.feed(self.chunk, count):
                self._handle_line(raw)
        finally:
            self.chunk[:count] = bytes(count)

    def _on_end_of_input(self):
        if self.reader.pending():
            template_log(ERROR, 'bad-request: unfinished last line ignored')
        template_log(INFO, 'end of input, stopping')
        self.selector.unregister(0)
        self.stopping = True

    def _handle_line(self, raw):
        if raw is lines.TOO_LONG:
            template_log(ERROR, 'line-too-long: over %d bytes, ignored'
                         % lines.MAX_LINE_BYTES)
            return
        try:
            verb, worker_id, binding = lines.parse_command(raw)
        except lines.BadLine as error:
            template_log(ERROR, 'bad-request: %s, line ignored' % error)
            return
        try:
            self._dispatch(verb, worker_id, binding)
        except Exception as error:
            template_log(ERROR, '%s %s failed: %s: %s' % (
                verb, worker_id, type(error).__name__, error))

    def _dispatch(self, verb, worker_id, binding):
        if verb == 'fork':
            self._fork(worker_id)
        elif verb == 'bind':
            self._bind(worker_id, binding)
        else:
            self._stop(worker_id)

    # -- commands -----------------------------------------------------------

    def _fork(self, worker_id):
        if worker_id in self.workers:
            template_log(ERROR, 'fork %s refused: id already in use'
                         % worker_id)
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError as error:
            ours.close()
            theirs.close()
            self.emit('fork-failed', worker_id, _reason(error.strerror))
            template_log(ERROR, 'fork %s failed: %s'
                         % (worker_id, error.strerror))
            return
        if pid == 0:
            self._become_worker(worker_id, ours, theirs)
        theirs.close()
        self._track(WorkerRecord(
            worker_id, pid, ours, os.path.join(self.worker_root, worker_id)))

    def _become_worker(self, worker_id, ours, theirs):
        # In the child. worker.run never returns; the guard makes sure no
        # exception can carry the child back into the template's loop.
        try:
            inherited = [record.sock for record in self.workers.values()
                         if record.sock is not None]
            inherited.append(ours)
            worker.run(worker.Park(
                worker_id, theirs, self.worker_root, self.service,
                os.getppid(), self.as_root, inherited))
        finally:
            os._exit(worker.EXIT_FAILED)

    def _track(self, record):
        self.workers[record.worker_id] = record
        self.by_pid[record.pid] = record
        self.selector.register(
            record.sock, selectors.EVENT_READ,
            lambda key, record=record: self._read_worker(record))
        template_log(DEBUG, 'forked %s as pid %d'
                     % (record.worker_id, record.pid))

    def _bind(self, worker_id, binding):
        record = self.workers.get(worker_id)
        if record is None or record.state != PARKED:
            template_log(ERROR, 'bind %s refused: %s' % (
                worker_id, 'no such worker' if record is None
                else 'worker is %s, not parked' % record.state))
            return
        try:
            # Straight from the line buffer: the template never holds the
            # binding as an object (see lines.LineReader).
            record.sock.send(binding)
        except OSError as error:
            # It died while parked; its exited follows.
            record.state = FAILED
            self.emit('bind-failed', worker_id, 'worker unreachable')
            template_log(ERROR, 'bind %s: worker unreachable: %s'
                         % (worker_id, error.strerror))
            return
        record.state = BINDING

    def _stop(self, worker_id):
        record = self.workers.get(worker_id)
        if record is None or record.state not in (STARTING, PARKED):
            template_log(ERROR, 'stop %s refused: %s' % (
                worker_id, 'no such worker' if record is None
                else 'worker is %s, not parked' % record.state))
            return
        self._kill(record)

    def _kill(self, record):
        try:
            os.kill(record.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        record.state = STOPPING

    # -- messages from workers ----------------------------------------------

    def _read_worker(self, record):
        """Handle every message waiting on the worker's socket."""
        while record.sock is not None:
            try:
                message = record.sock.recv(lines.MAX_LINE_BYTES,
                                           socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                message = b''
            if not message:
                self._forget_socket(record)
                return
            self._handle_message(record, message)

    def _forget_socket(self, record):
        self.selector.unregister(record.sock)
        record.sock.close()
        record.sock = None

    def _handle_message(self, record, message):
        text = message.decode('utf-8', 'replace')
        verb, _, reason = text.partition(' ')
        wanted = {'parked': STARTING, 'fork-failed': STARTING,
                  'bound': BINDING, 'bind-failed': BINDING}
        if record.state == STOPPING:
            return
        if wanted.get(verb) != record.state:
            template_log(ERROR, 'worker %s sent %r while %s, ignored'
                         % (record.worker_id, verb[:20], record.state))
            return
        if verb == 'parked':
            record.state = PARKED
            self.emit('parked', record.worker_id, str(record.pid),
                      record.directory)
        elif verb == 'bound':
            record.state = BOUND
            self.emit('bound', record.worker_id)
        else:
            record.state = FAILED
            self.emit(verb, record.worker_id, _reason(reason))

    # -- children -----------------------------------------------------------

    def _on_wake(self, key):
        try:
            signums = os.read(self.wake_r, READ_CHUNK_BYTES)
        except BlockingIOError:
            signums = b''
        if signal.SIGTERM in signums:
            template_log(INFO, 'SIGTERM received, stopping')
            self.stopping = True
        self._reap()

    def _reap(self):
        """Collect every child that has exited, without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, status)

    def _exited(self, pid, status):
        record = self.by_pid.pop(pid, None)
        if record is None:
            template_log(WARNING, 'reaped unknown child pid %d' % pid)
            return
        # Messages sent just before the exit come first: parked, bound
        # and bind-failed always precede exited.
        self._read_worker(record)
        if record.sock is not None:
            self._forget_socket(record)
        self._answer_for_the_dead(record)
        del self.workers[record.worker_id]
        _remove_directory(record.directory)
        text = _status_text(status)
        self.emit('exited', record.worker_id, str(pid), text)
        template_log(_exit_level(record, status), 'worker %s pid %d %s '
                     'exited %s' % (record.worker_id, pid, record.state,
                                    text))

    def _answer_for_the_dead(self, record):
        # Every fork gets parked or fork-failed, every bind gets bound or
        # bind-failed, even when the worker died without saying so.
        if record.state == STARTING:
            self.emit('fork-failed', record.worker_id,
                      'worker exited before it was parked')
        elif record.state == BINDING:
            self.emit('bind-failed', record.worker_id,
                      'worker exited before it was bound')

    # -- shutdown -----------------------------------------------------------

    def _shut_down(self):
        """Kill parked workers, reap them; leave bound ones running."""
        killed = [record for record in self.workers.values()
                  if record.state in (STARTING, PARKED, STOPPING)]
        for record in killed:
            self._kill(record)
        for record in killed:
            self._wait_for(record.pid)
        self._reap()
        left = len(self.workers)
        if left:
            template_log(INFO, 'leaving %d bound workers to finish' % left)
        template_log(INFO, 'stopped')

    def _wait_for(self, pid):
        while True:
            try:
                _, status = os.waitpid(pid, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                return
            self._exited(pid, status)
            return


def _wake_only(signum, frame):
    """Signal handler: the wake-up fd has done the work already."""


def _reason(text):
    # A reason is the rest of an event line; keep it well inside the
    # field limit in bytes, whatever characters it holds.
    reason = one_line(text, MAX_REASON_CHARS)
    while len(reason.encode('utf-8')) > MAX_REASON_CHARS:
        reason = reason[:-1]
    return reason


def _status_text(status):
    if os.WIFSIGNALED(status):
        return 'signal:%d' % os.WTERMSIG(status)
    return 'code:%d' % os.WEXITSTATUS(status)


def _exit_level(record, status):
    if os.WIFSIGNALED(status):
        if record.state == STOPPING:
            return INFO
        return ERROR
    code = os.WEXITSTATUS(status)
    if code == 0:
        return DEBUG
    if code in (worker.EXIT_BIND_FAILED, worker.EXIT_FIFO_TIMEOUT):
        return WARNING
    return INFO


def _remove_directory(directory):
    # A bound session's user owns its directory and may have left
    # anything there: a tree deeper than Python's recursion limit (which
    # once crashed the template), or a symlink swapped in while we walk.
    # GNU rm walks with openat/unlinkat, never follows a link, and copes
    # with any depth; nothing here may stop the template.
    try:
        result = subprocess.run(
            [RM, '-rf', '--one-file-system', '--', directory],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=RM_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as error:
        template_log(ERROR, 'cannot remove %s: %s' % (directory, error))
        return
    if result.returncode != 0:
        template_log(ERROR, 'cannot remove %s: %s' % (
            directory, one_line(result.stderr.decode('utf-8', 'replace'))))
