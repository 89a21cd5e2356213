"""Tests of prefork-connect, the per-connection client, in C.

Each test starts the real binary against a fake preforkd: a Unix socket
server thread in a temporary directory that plays one script per
connection, and, where a session runs, a fake worker thread that opens
real FIFOs (made with os.mkfifo) from the worker's side in the worker's
order. Only the daemon and the worker are fakes; the client is the real
thing, built here with the same flags as the Maven build unless the
environment variable PREFORK_CONNECT names a binary.

Run from the repository root:

    /usr/bin/python3 -m unittest discover -s protocol/src/test/python -v
"""

import fcntl
import hashlib
import itertools
import os
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(
    os.path.join(HERE, '..', '..', 'main', 'c', 'prefork_connect.c'))
CFLAGS = ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-D_GNU_SOURCE']

# exit codes of prefork-connect (sysexits.h)
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77

CLIENT_TIMEOUT_S = 60
MB = 1024 * 1024

BINARY = None
_build_dir = None


def setUpModule():
    global BINARY, _build_dir
    BINARY = os.environ.get('PREFORK_CONNECT')
    if BINARY:
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError('PREFORK_CONNECT=%s is not executable'
                               % BINARY)
        return
    _build_dir = tempfile.mkdtemp(prefix='prefork-connect-build-')
    BINARY = os.path.join(_build_dir, 'prefork-connect')
    built = subprocess.run(['cc', *CFLAGS, '-o', BINARY, SOURCE],
                           capture_output=True, text=True)
    if built.returncode != 0 or built.stderr:
        raise RuntimeError('building prefork-connect failed:\n'
                           + built.stderr)


def tearDownModule():
    if _build_dir:
        shutil.rmtree(_build_dir, ignore_errors=True)


# ---- helpers ------------------------------------------------------------

def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


def client_env(**extra):
    """A minimal environment: nothing of ours leaks into the client.

    Sanitizer settings pass, for runs against a sanitizer build.
    """
    env = {'PATH': '/usr/bin:/bin'}
    for name in ('ASAN_OPTIONS', 'UBSAN_OPTIONS'):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


class Conn:
    """The daemon's end of one control connection."""

    def __init__(self, sock, daemon):
        self.sock = sock
        self.daemon = daemon
        self.buf = b''

    def send(self, line):
        self.sock.sendall(line.encode() + b'\n')

    def send_if_still_there(self, line):
        """For lines the client may rightly hang up before reading."""
        try:
            self.send(line)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def read_request(self):
        """Reads lines up to the spawn line; returns them, without LF."""
        while not any(line.startswith(b'spawn ')
                      for line in self.buf.split(b'\n')[:-1]):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('client closed before spawn: %r' % self.buf)
            self.buf += chunk
        end = self.buf.index(b'spawn ')
        end = self.buf.index(b'\n', end) + 1
        raw, self.buf = self.buf[:end], self.buf[end:]
        self.daemon.requests.append(raw)
        return raw.split(b'\n')[:-1]

    def wait_closed(self, timeout_s=20):
        """Waits for the client to hang up; True if it did in time."""
        self.sock.settimeout(timeout_s)
        try:
            while self.sock.recv(65536):
                pass
        except socket.timeout:
            return False
        except ConnectionResetError:
            pass  # it left lines of ours unread: still a hang-up
        return True

    def close(self):
        self.sock.close()


class FakeDaemon:
    """Stands in for preforkd: plays `script(conn)` for each connection."""

    _ids = itertools.count(1)

    def __init__(self, directory, script):
        self.path = os.path.join(directory,
                                 'control-%d.sock' % next(self._ids))
        self.script = script
        self.requests = []
        self.failures = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # close() shut the listener down
            sock.settimeout(20)
            try:
                self.script(Conn(sock, self))
            except Exception as exc:  # reported by the test's tearDown
                self.failures.append(exc)
            finally:
                sock.close()

    def close(self):
        # shutdown() wakes the accept() blocked in the thread; close() alone
        # would not.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(10)


class Trap:
    """A listening socket nobody accepts on: proves no client connected."""

    def __init__(self, directory):
        self.path = os.path.join(directory, 'trap.sock')
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.setblocking(False)

    def was_connected(self):
        # A connection the peer already closed still waits in the backlog.
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return False
        sock.close()
        return True

    def close(self):
        self.listener.close()


class FakeWorker:
    """A worker's side of the three FIFOs, run by a thread.

    It opens them as the real worker does (stdin for reading, then stdout
    and stderr for writing; a FIFO open blocks until the other side opens
    too), unlinks them, and runs body(stdin_fd, stdout_fd, stderr_fd),
    whose return value is the exit status for the daemon to report.
    """

    _ids = itertools.count(1)

    def __init__(self, directory, body, start=True):
        self.id = 'w%d' % next(self._ids)
        self.dir = os.path.join(directory, self.id)
        os.mkdir(self.dir, 0o700)
        self.paths = [os.path.join(self.dir, name)
                      for name in ('stdin', 'stdout', 'stderr')]
        for path in self.paths:
            os.mkfifo(path, 0o600)
        self.body = body
        self.opened = threading.Event()
        self.status = None
        self.failure = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        if start:
            self.thread.start()

    def ok_line(self):
        return 'ok %s %d %s %s %s' % (self.id, os.getpid(), *self.paths)

    def _run(self):
        fds = []
        try:
            fds.append(os.open(self.paths[0], os.O_RDONLY))
            fds.append(os.open(self.paths[1], os.O_WRONLY))
            fds.append(os.open(self.paths[2], os.O_WRONLY))
            for path in self.paths:
                os.unlink(path)
            self.opened.set()
            self.status = self.body(*fds)
        except Exception as exc:
            self.failure = exc
        finally:
            for fd in fds:
                os.close(fd)

    def unblock(self):
        """Opens the far end of FIFOs still there, waking a blocked open."""
        for path in self.paths:
            for flags in (os.O_RDONLY, os.O_WRONLY):
                try:
                    os.close(os.open(path, flags | os.O_NONBLOCK))
                except OSError:
                    pass


class ClientTestCase(unittest.TestCase):
    """Gives each test a directory, and cleans daemons and workers up."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='prefork-connect-test-')
        self.daemons = []
        self.workers = []
        # A cleanup, not tearDown: cleanups a test adds later (releasing a
        # worker it holds) run first.
        self.addCleanup(self.clean_up)

    def clean_up(self):
        for worker in self.workers:
            worker.unblock()
            if worker.thread.is_alive():
                worker.thread.join(10)
        for daemon in self.daemons:
            daemon.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for daemon in self.daemons:
            if daemon.failures:
                raise daemon.failures[0]

    def daemon(self, script):
        daemon = FakeDaemon(self.tmp, script)
        self.daemons.append(daemon)
        return daemon

    def worker(self, body, start=True):
        worker = FakeWorker(self.tmp, body, start)
        self.workers.append(worker)
        return worker

    def session(self, body, greet_first=True):
        """A daemon script that hands out one worker running body."""
        def script(conn):
            if greet_first:
                conn.send('prefork 1')
            conn.read_request()
            if not greet_first:
                conn.send('prefork 1')
            worker = self.worker(body)
            conn.send(worker.ok_line())
            worker.thread.join(CLIENT_TIMEOUT_S)
            if worker.failure is not None:
                raise worker.failure
            # A client killed mid-session has gone; the test checks that.
            conn.send_if_still_there('exit %s %s'
                                     % (worker.id, worker.status))
        return script

    def run_client(self, socket_path, *args, input=b'', env=None):
        return subprocess.run(
            [BINARY, '--socket', socket_path, *args], input=input,
            capture_output=True, env=env or client_env(),
            timeout=CLIENT_TIMEOUT_S)

    def assertExit(self, result, code, stderr=None):
        self.assertEqual(result.returncode, code,
                         'stderr: %r' % result.stderr[:2000])
        if stderr is not None:
            self.assertEqual(result.stderr.decode(), stderr)


def finish_at_once(stdin_fd, stdout_fd, stderr_fd):
    return 'code:0'


# ---- the request --------------------------------------------------------

class RequestTest(ClientTestCase):

    def test_spawn_line_carries_user_and_args(self):
        # The daemon greets only after the request: the client must not wait.
        daemon = self.daemon(self.session(finish_at_once, greet_first=False))
        result = self.run_client(daemon.path, '--user', 'alice', '--',
                                 'serve', '--inet')
        self.assertExit(result, 0, '')
        self.assertEqual(daemon.requests, [b'spawn alice serve --inet\n'])

    def test_ssh_original_command_is_split_on_blanks(self):
        daemon = self.daemon(self.session(finish_at_once))
        command = ' bzr  serve\t--inet --directory=/ \t --allow-writes '
        result = self.run_client(
            daemon.path, '--user', 'alice',
            env=client_env(SSH_ORIGINAL_COMMAND=command))
        self.assertExit(result, 0, '')
        self.assertEqual(
            daemon.requests,
            [b'spawn alice bzr serve --inet --directory=/ --allow-writes\n'])

    def test_explicit_args_win_over_ssh_original_command(self):
        daemon = self.daemon(self.session(finish_at_once))
        result = self.run_client(
            daemon.path, '--user', 'bob', 'serve', '--inet',
            env=client_env(SSH_ORIGINAL_COMMAND='rm -rf /'))
        self.assertExit(result, 0, '')
        self.assertEqual(daemon.requests, [b'spawn bob serve --inet\n'])

    def test_no_args_and_no_original_command_sends_no_args(self):
        daemon = self.daemon(self.session(finish_at_once))
        result = self.run_client(daemon.path, '--user', 'bob')
        self.assertExit(result, 0, '')
        self.assertEqual(daemon.requests, [b'spawn bob\n'])

    def test_default_user_is_the_callers_name(self):
        daemon = self.daemon(self.session(finish_at_once))
        result = self.run_client(daemon.path, 'serve')
        self.assertExit(result, 0, '')
        name = pwd.getpwuid(os.getuid()).pw_name
        self.assertEqual(daemon.requests, [b'spawn %s serve\n'
                                           % name.encode()])

    def test_env_is_offered_before_spawn_and_secrets_stay_unprinted(self):
        daemon = self.daemon(self.session(finish_at_once))
        env = client_env(LANG='C.UTF-8', BZR_EMAIL='alice@example.com',
                         BRZ_EMAIL='Alice <alice@example.com>',
                         SECRET_TOKEN='s3cr3t\x01tail')
        result = self.run_client(
            daemon.path, '--user', 'alice', '--env', 'LANG',
            '--env', 'NOT_SET', '--env', 'BRZ_EMAIL', '--env=BZR_EMAIL',
            '--env', 'SECRET_TOKEN', '--env', 'LANG', '--', 'serve',
            env=env)
        self.assertExit(result, 0)
        # An env value is the rest of its line, so "Name <address>" goes
        # out whole; a control character never does.
        self.assertEqual(daemon.requests, [
            b'env LANG C.UTF-8\n'
            b'env BRZ_EMAIL Alice <alice@example.com>\n'
            b'env BZR_EMAIL alice@example.com\n'
            b'spawn alice serve\n'])
        stderr = result.stderr.decode()
        self.assertEqual(stderr, (
            'prefork: warning: not sending SECRET_TOKEN: its value'
            ' contains a control character\n'))
        self.assertNotIn('s3cr3t', stderr)

    def test_largest_request_within_limits_is_sent(self):
        daemon = self.daemon(self.session(finish_at_once))
        user = 'u' + 'x' * 31
        args = ['a' * 1024] + ['b' * 200] * 30
        result = self.run_client(daemon.path, '--user', user, '--', *args)
        self.assertExit(result, 0, '')
        expected = ' '.join(['spawn', user, *args]) + '\n'
        self.assertEqual(daemon.requests, [expected.encode()])

    def test_line_of_exactly_8192_bytes_is_sent(self):
        daemon = self.daemon(self.session(finish_at_once))
        args = ['a' * 1024] * 7 + ['z' * 1004]
        result = self.run_client(daemon.path, '--user', 'alice', '--',
                                 *args)
        self.assertExit(result, 0, '')
        self.assertEqual(len(daemon.requests[0]), 8192)

    def test_utf8_args_are_sent(self):
        daemon = self.daemon(self.session(finish_at_once))
        result = self.run_client(daemon.path, '--user', 'alice', '--',
                                 '--directory=/srv/bzr/d\u00e9j\u00e0-vu')
        self.assertExit(result, 0, '')
        self.assertEqual(
            daemon.requests,
            ['spawn alice --directory=/srv/bzr/d\u00e9j\u00e0-vu\n'
             .encode()])


# ---- validation before connecting ---------------------------------------

class LocalValidationTest(ClientTestCase):
    """Bad input is refused with exit 64 before any connection."""

    def check_refused(self, args, message=None, env=None, secret=None):
        trap = Trap(self.tmp)
        try:
            result = subprocess.run(
                [BINARY, '--socket', trap.path, *args],
                capture_output=True, env=env or client_env(),
                timeout=CLIENT_TIMEOUT_S)
            self.assertExit(result, EX_USAGE)
            stderr = result.stderr.decode(errors='replace')
            self.assertTrue(stderr.startswith('prefork: '), stderr)
            self.assertEqual(stderr.count('\n'), 1, stderr)
            if message is not None:
                self.assertEqual(stderr, 'prefork: %s\n' % message)
            if secret is not None:
                self.assertNotIn(secret, stderr)
            self.assertFalse(trap.was_connected(),
                             'the client connected despite bad input')
        finally:
            trap.close()
            os.unlink(trap.path)

    def test_bad_user_names(self):
        rule = '^[a-z_][a-z0-9_-]{0,31}$'
        for user, shown in [('Alice', 'Alice'), ('a b', 'a b'),
                            ('1abc', '1abc'), ('-x', '-x'),
                            ('a' * 33, 'a' * 33), ('al.ice', 'al.ice'),
                            ('bob\nspawn root', 'bob?spawn root'),
                            ('', '')]:
            with self.subTest(user=user):
                self.check_refused(
                    ['--user', user, 'serve'],
                    "user name '%s' does not match %s" % (shown, rule))

    def test_args_that_cannot_be_fields(self):
        cases = [
            ('serve\n', 'contains a control character'),
            ('a\x01b', 'contains a control character'),
            ('a\x7fb', 'contains a control character'),
            ('a\rb', 'contains a control character'),
            ('a b', 'contains a space'),
            ('', 'is empty'),
            ('x' * 1025, 'is longer than 1024 bytes'),
            (b'\xff\xfe', 'is not valid UTF-8'),
            (b'\xc0\xaf', 'is not valid UTF-8'),          # overlong '/'
            (b'\xed\xa0\x80', 'is not valid UTF-8'),      # a surrogate
            (b'caf\xc3', 'is not valid UTF-8'),           # cut short
        ]
        for arg, problem in cases:
            with self.subTest(arg=arg):
                self.check_refused(
                    ['--user', 'alice', '--', 'serve', arg],
                    'argument 2 %s; it cannot be sent' % problem)

    def test_too_many_args(self):
        self.check_refused(['--user', 'alice', '--', *['a'] * 32],
                           '32 arguments given, at most 31 can be sent')

    def test_line_one_byte_too_long(self):
        args = ['a' * 1024] * 7 + ['z' * 1005]
        self.check_refused(
            ['--user', 'alice', '--', *args],
            'the spawn request would be 8193 bytes, over the limit of 8192')

    def test_bad_ssh_original_command_is_not_echoed(self):
        env = client_env(SSH_ORIGINAL_COMMAND='serve --token=SECRETVAL\x07')
        self.check_refused(['--user', 'alice'],
                           'argument 2 contains a control character;'
                           ' it cannot be sent',
                           env=env, secret='SECRETVAL')
        env = client_env(SSH_ORIGINAL_COMMAND='serve\n--token=SECRETVAL')
        self.check_refused(['--user', 'alice'],
                           'argument 1 contains a control character;'
                           ' it cannot be sent',
                           env=env, secret='SECRETVAL')

    def test_ssh_original_command_with_too_many_words(self):
        env = client_env(SSH_ORIGINAL_COMMAND=' '.join(['w'] * 40))
        self.check_refused(['--user', 'alice'],
                           'SSH_ORIGINAL_COMMAND has more than 31 words',
                           env=env)

    def test_bad_env_names(self):
        for name in ['lower', 'A-B', '1ABC', 'A' * 65, '']:
            with self.subTest(name=name):
                self.check_refused(
                    ['--user', 'alice', '--env', name, 'serve'],
                    "--env name '%s' does not match"
                    " ^[A-Z_][A-Z0-9_]{0,63}$"
                    % (name if len(name) <= 40 else name[:40] + '...'))

    def test_bad_options(self):
        must = '--timeout-ms must be a whole number from 1 to 86400000'
        self.check_refused(['--timeout-ms', '0'], must)
        self.check_refused(['--timeout-ms', '10s'], must)
        self.check_refused(['--bogus'], 'unknown option --bogus (see --help)')
        self.check_refused(['--user'], 'option --user needs a value')

    def test_socket_path_too_long(self):
        result = subprocess.run(
            [BINARY, '--socket', '/' + 'x' * 200, '--user', 'alice'],
            capture_output=True, env=client_env(), timeout=CLIENT_TIMEOUT_S)
        self.assertExit(result, EX_USAGE,
                        'prefork: the socket path must have 1 to 107 bytes\n')


# ---- the relay ----------------------------------------------------------

XOR_TABLE = bytes(b ^ 0x5a for b in range(256))
NOT_TABLE = bytes(b ^ 0xff for b in range(256))
ERR_PATTERN = b''.join(b'%08d\n' % i for i in range(120000))  # ~1 MB


def doubled(data):
    """Each byte b becomes b ^ 0x5a, b ^ 0xff: a reply twice the request."""
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(XOR_TABLE)
    out[1::2] = data.translate(NOT_TABLE)
    return bytes(out)


def request_reply_body(stdin_fd, stdout_fd, stderr_fd):
    """One thread, like a smart server: small requests, large replies.

    It reads at most 4 KiB, then writes a reply twice that size (and some
    stderr) before it reads again. A client that, once poll() says the
    stdin FIFO has room, blocks writing its whole buffer there stops
    draining stdout, and this worker then blocks on stdout: deadlock.
    """
    err_left = memoryview(ERR_PATTERN)
    while True:
        chunk = os.read(stdin_fd, 4096)
        if not chunk:
            break
        write_all(stdout_fd, doubled(chunk))
        write_all(stderr_fd, err_left[:1024])
        err_left = err_left[1024:]
    write_all(stderr_fd, err_left)
    return 'code:0'


class RelayTest(ClientTestCase):

    def test_stdin_reaches_worker_and_outputs_come_back(self):
        def body(stdin_fd, stdout_fd, stderr_fd):
            got = read_all(stdin_fd)  # returns only at the client's EOF
            write_all(stdout_fd, b'out:' + got)
            write_all(stderr_fd, b'err:' + got[::-1])
            return 'code:0'
        daemon = self.daemon(self.session(body))
        result = self.run_client(daemon.path, '--user', 'alice', 'serve',
                                 input=b'hello worker\n')
        self.assertExit(result, 0)
        self.assertEqual(result.stdout, b'out:hello worker\n')
        self.assertEqual(result.stderr, b'err:\nrekrow olleh')

    def test_5mb_each_way_at_once_through_a_single_threaded_worker(self):
        payload = random.Random(1).randbytes(5 * MB)
        daemon = self.daemon(self.session(request_reply_body))
        started = time.monotonic()
        result = self.run_client(daemon.path, '--user', 'alice', 'serve',
                                 input=payload)
        elapsed = time.monotonic() - started
        self.assertExit(result, 0)
        self.assertEqual(len(result.stdout), 2 * len(payload))
        self.assertTrue(result.stdout == doubled(payload),
                        'stdout differs from the doubled stdin')
        self.assertTrue(result.stderr == ERR_PATTERN,
                        'stderr differs from the worker\'s pattern')
        print('\n  5 MB in, 10 MB out, 1 MB stderr: %.0f ms'
              % (elapsed * 1000), file=sys.stderr)

    def test_large_reply_while_the_client_still_writes(self):
        # The worker answers 5 MB before it reads anything: a client that
        # blocks on the full stdin FIFO would never drain stdout.
        reply = random.Random(2).randbytes(5 * MB)
        request = random.Random(3).randbytes(5 * MB)

        def body(stdin_fd, stdout_fd, stderr_fd):
            write_all(stdout_fd, reply)
            got = read_all(stdin_fd)
            write_all(stderr_fd, b'%d %s\n' % (
                len(got), hashlib.sha256(got).hexdigest().encode()))
            return 'code:0'
        daemon = self.daemon(self.session(body))
        result = self.run_client(daemon.path, '--user', 'alice', 'serve',
                                 input=request)
        self.assertExit(result, 0)
        self.assertTrue(result.stdout == reply, 'stdout differs')
        self.assertEqual(result.stderr, b'%d %s\n' % (
            len(request), hashlib.sha256(request).hexdigest().encode()))

    def test_vanished_stdout_stops_relay_but_exit_is_awaited(self):
        def body(stdin_fd, stdout_fd, stderr_fd):
            try:
                while True:
                    os.write(stdout_fd, b'x' * 65536)
            except BrokenPipeError:
                # The client closed its end because its own stdout is gone.
                return 'code:5'
        daemon = self.daemon(self.session(body))
        proc = subprocess.Popen(
            [BINARY, '--socket', daemon.path, '--user', 'alice', 'serve'],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=client_env())
        proc.stdout.close()
        try:
            stderr = proc.stderr.read()
            proc.wait(CLIENT_TIMEOUT_S)
        finally:
            proc.kill()
            proc.stderr.close()
        self.assertEqual(proc.returncode, 5, stderr)
        self.assertEqual(stderr, b'')


class StdioFlagsTest(ClientTestCase):
    """O_NONBLOCK on fds 0-2 is shared with whoever gave them to us."""

    def start_client(self, daemon):
        pipes = [os.pipe() for _ in range(3)]
        self.addCleanup(lambda: [os.close(fd) for p in pipes for fd in p])
        ours = [pipes[0][0], pipes[1][1], pipes[2][1]]  # the client's ends
        proc = subprocess.Popen(
            [BINARY, '--socket', daemon.path, '--user', 'alice', 'serve'],
            stdin=ours[0], stdout=ours[1], stderr=ours[2], env=client_env())
        self.addCleanup(proc.kill)
        return proc, ours

    def nonblocking(self, fds):
        return [bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
                for fd in fds]

    def test_flags_restored_after_the_session(self):
        def body(stdin_fd, stdout_fd, stderr_fd):
            write_all(stdout_fd, b'x')
            return 'code:4'
        proc, ours = self.start_client(self.daemon(self.session(body)))
        self.assertEqual(proc.wait(CLIENT_TIMEOUT_S), 4)
        self.assertEqual(self.nonblocking(ours), [False] * 3)

    def test_flags_restored_when_killed_by_sigterm(self):
        release = threading.Event()
        self.addCleanup(release.set)

        def body(stdin_fd, stdout_fd, stderr_fd):
            write_all(stdout_fd, b'started\n')
            release.wait(CLIENT_TIMEOUT_S)
            return 'code:0'
        proc, ours = self.start_client(self.daemon(self.session(body)))
        deadline = time.monotonic() + 10
        while self.nonblocking(ours) != [True] * 3:
            self.assertLess(time.monotonic(), deadline,
                            'the client never made its stdio non-blocking')
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(CLIENT_TIMEOUT_S), -signal.SIGTERM)
        self.assertEqual(self.nonblocking(ours), [False] * 3)


# ---- exit status --------------------------------------------------------

class ExitStatusTest(ClientTestCase):

    def test_worker_status_becomes_client_status(self):
        for status, code in [('code:0', 0), ('code:3', 3), ('code:255', 255),
                             ('signal:9', 137), ('signal:15', 143)]:
            with self.subTest(status=status):
                def body(stdin_fd, stdout_fd, stderr_fd, status=status):
                    write_all(stdout_fd, b'bye\n')
                    return status
                daemon = self.daemon(self.session(body))
                result = self.run_client(daemon.path, '--user', 'alice',
                                         'serve')
                self.assertExit(result, code, '')
                self.assertEqual(result.stdout, b'bye\n')

    def test_worker_that_exits_before_opening_its_fifos(self):
        # Its exit arrives while the client is blocked opening stdin.
        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
            worker = self.worker(finish_at_once, start=False)
            conn.send(worker.ok_line())
            time.sleep(0.3)
            conn.send('exit %s code:75' % worker.id)
            conn.wait_closed()
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice', 'serve')
        worker_id = self.workers[0].id
        self.assertExit(
            result, 75, 'prefork: worker %s exited (status 75) before the'
            ' session started\n' % worker_id)

    def test_worker_gone_and_fifos_removed_before_its_exit_is_reported(self):
        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
            worker = self.worker(finish_at_once, start=False)
            conn.send(worker.ok_line())
            time.sleep(0.3)
            shutil.rmtree(worker.dir)
            time.sleep(0.3)
            conn.send('exit %s code:75' % worker.id)
            conn.wait_closed()
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice', 'serve')
        self.assertExit(result, 75)


# ---- error replies and broken daemons -----------------------------------

class ErrorReplyTest(ClientTestCase):

    def test_each_error_code(self):
        def script(conn):
            conn.send('prefork 1')
            code = conn.read_request()[-1].split()[2].decode()
            conn.send('error %s no worker for you, says %s' % (code, code))
            # "stays open" codes: the client must not wait for a close.
            conn.wait_closed()
        daemon = self.daemon(script)
        for code, status in [
                ('bad-request', EX_USAGE), ('line-too-long', EX_USAGE),
                ('bad-command', EX_USAGE), ('refused', EX_NOPERM),
                ('unknown-user', EX_NOPERM), ('pool-exhausted', EX_TEMPFAIL),
                ('shutting-down', EX_TEMPFAIL),
                ('worker-failed', EX_UNAVAILABLE),
                ('internal', EX_UNAVAILABLE), ('brand-new', EX_UNAVAILABLE)]:
            with self.subTest(code=code):
                result = self.run_client(daemon.path, '--user', 'alice',
                                         '--', code)
                self.assertExit(
                    result, status, 'prefork: no worker for you, says %s'
                    ' (%s)\n' % (code, code))

    def replying(self, *lines, then_close=True):
        def script(conn):
            conn.read_request()
            for line in lines:
                conn.send_if_still_there(line)
            if not then_close:
                conn.wait_closed()
        return self.daemon(script)

    def test_greeting_with_another_version(self):
        daemon = self.replying('prefork 2', 'error internal unreachable',
                               then_close=False)
        result = self.run_client(daemon.path, '--user', 'alice', 'serve')
        self.assertExit(result, EX_PROTOCOL,
                        'prefork: preforkd speaks protocol version 2;'
                        ' this client speaks 1\n')

    def test_malformed_greetings(self):
        for greeting in ['prefork', 'prefork 1.0', 'hello 1',
                         'error shutting-down bye', 'prefork  1']:
            with self.subTest(greeting=greeting):
                daemon = self.replying(greeting, then_close=False)
                result = self.run_client(daemon.path, '--user', 'alice')
                self.assertExit(result, EX_PROTOCOL)
                self.assertIn(b'preforkd sent no greeting', result.stderr)

    def test_malformed_replies(self):
        for reply in ['ok w1 12', 'ok w1 abc /a /b /c', 'ok x1 12 /a /b /c',
                      'ok w1 12 /a /b /c extra', 'ok w1 12 a /b /c',
                      'ok w1  12 /a /b /c', 'okay', 'status parked=1',
                      'error', 'error refused', 'ok w1 12 /a\x01 /b /c']:
            with self.subTest(reply=reply):
                daemon = self.replying('prefork 1', reply, then_close=False)
                result = self.run_client(daemon.path, '--user', 'alice')
                self.assertExit(result, EX_PROTOCOL)

    def test_malformed_exit_lines(self):
        for line in ['exit w999 code:0', 'exit {id} code:256',
                     'exit {id} signal:0', 'exit {id} code:-1',
                     'exit {id} killed', 'exit {id}']:
            with self.subTest(line=line):
                def script(conn, line=line):
                    conn.send('prefork 1')
                    conn.read_request()
                    worker = self.worker(finish_at_once)
                    conn.send(worker.ok_line())
                    worker.thread.join(10)
                    conn.send(line.format(id=worker.id))
                    conn.wait_closed()
                daemon = self.daemon(script)
                result = self.run_client(daemon.path, '--user', 'alice')
                self.assertExit(
                    result, EX_PROTOCOL, 'prefork: preforkd sent a malformed'
                    ' line where exit was due\n')

    def test_fifo_path_that_is_a_regular_file_is_not_written(self):
        victim = os.path.join(self.tmp, 'victim')
        with open(victim, 'wb') as f:
            f.write(b'precious\n')

        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
            conn.send('ok w1 12 %s %s/b %s/c' % (victim, self.tmp, self.tmp))
            conn.wait_closed()
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice',
                                 input=b'overwrite\n')
        self.assertExit(result, EX_PROTOCOL,
                        "prefork: the worker's stdin %s is not a FIFO\n"
                        % victim)
        with open(victim, 'rb') as f:
            self.assertEqual(f.read(), b'precious\n')

    def test_fifo_path_that_is_a_symlink_is_not_followed(self):
        worker = self.worker(finish_at_once, start=False)
        os.unlink(worker.paths[0])
        os.symlink(os.path.join(self.tmp, 'elsewhere'), worker.paths[0])
        os.mkfifo(os.path.join(self.tmp, 'elsewhere'))

        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
            conn.send(worker.ok_line())
            conn.wait_closed()
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice')
        self.assertExit(result, EX_UNAVAILABLE)
        self.assertIn(b'cannot open the worker\'s stdin FIFO', result.stderr)


class EarlyCloseTest(ClientTestCase):

    def test_closed_before_greeting(self):
        daemon = self.daemon(lambda conn: None)
        result = self.run_client(daemon.path, '--user', 'alice')
        self.assertExit(result, EX_SOFTWARE,
                        'prefork: preforkd closed the connection before its'
                        ' greeting\n')

    def test_closed_before_reply(self):
        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice')
        self.assertExit(result, EX_SOFTWARE,
                        'prefork: preforkd closed the connection before its'
                        ' reply to spawn\n')

    def test_closed_while_the_worker_still_runs(self):
        # A dead daemon must not cut a session off: the bound worker is
        # the user's, and the client relays until its output ends.
        daemon_gone = threading.Event()
        self.addCleanup(daemon_gone.set)

        def body(stdin_fd, stdout_fd, stderr_fd):
            write_all(stdout_fd, b'started\n')
            daemon_gone.wait(CLIENT_TIMEOUT_S)
            time.sleep(0.2)
            write_all(stdout_fd, b'still serving\n')
            return 'code:0'

        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
            worker = self.worker(body)
            conn.send(worker.ok_line())
            worker.opened.wait(10)
            daemon_gone.set()
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice')
        self.assertExit(result, EX_SOFTWARE,
                        'prefork: preforkd closed the control connection'
                        ' before the worker\'s exit status\n')
        self.assertEqual(result.stdout, b'started\nstill serving\n')

    def test_closed_after_the_worker_without_exit_line(self):
        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
            worker = self.worker(finish_at_once)
            conn.send(worker.ok_line())
            worker.thread.join(10)
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice')
        self.assertExit(result, EX_SOFTWARE,
                        'prefork: preforkd closed the control connection'
                        ' before the worker\'s exit status\n')


# ---- time bounds --------------------------------------------------------

class TimeoutTest(ClientTestCase):

    def test_no_reply_within_timeout(self):
        hung_up = []

        def script(conn):
            conn.send('prefork 1')
            conn.read_request()
            hung_up.append(conn.wait_closed())
        daemon = self.daemon(script)
        started = time.monotonic()
        result = self.run_client(daemon.path, '--user', 'alice',
                                 '--timeout-ms', '300')
        elapsed = time.monotonic() - started
        self.assertExit(result, EX_TEMPFAIL,
                        'prefork: no reply to spawn from preforkd within'
                        ' 300 ms\n')
        self.assertGreaterEqual(elapsed, 0.3)
        self.assertLess(elapsed, 10)

    def test_queued_reply_within_timeout(self):
        session = self.session(finish_at_once)

        def script(conn):
            time.sleep(0.4)  # the pool is empty: the daemon queues us
            session(conn)
        daemon = self.daemon(script)
        result = self.run_client(daemon.path, '--user', 'alice',
                                 '--timeout-ms', '5000')
        self.assertExit(result, 0, '')

    def test_timeout_does_not_bound_the_session(self):
        def body(stdin_fd, stdout_fd, stderr_fd):
            time.sleep(0.8)
            write_all(stdout_fd, b'late\n')
            return 'code:0'
        daemon = self.daemon(self.session(body))
        result = self.run_client(daemon.path, '--user', 'alice',
                                 '--timeout-ms', '200')
        self.assertExit(result, 0, '')
        self.assertEqual(result.stdout, b'late\n')


# ---- start-up time (printed, not asserted) ------------------------------

class StartupTimeTest(ClientTestCase):

    RUNS = 200

    def time_runs(self, argv):
        times_ms = []
        for _ in range(self.RUNS):
            started = time.perf_counter()
            result = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                    capture_output=True, env=client_env())
            times_ms.append((time.perf_counter() - started) * 1000)
            yield result
        self.last_times_ms = times_ms

    def summary(self, label):
        times = sorted(self.last_times_ms)
        return '  %-44s median %.2f ms, p95 %.2f ms, min %.2f ms' % (
            label, statistics.median(times),
            times[int(len(times) * 0.95) - 1], times[0])

    def test_print_startup_time(self):
        lines = ['']
        for result in self.time_runs(['/bin/true']):
            self.assertEqual(result.returncode, 0)
        lines.append(self.summary('/bin/true (harness cost)'))

        args = [BINARY, '--user', 'Bad']
        for result in self.time_runs(args):
            self.assertEqual(result.returncode, EX_USAGE)
        lines.append(self.summary('prefork-connect, refused locally'))

        def refuse(conn):
            conn.send('prefork 1')
            conn.read_request()
            conn.send('error pool-exhausted none idle')
        daemon = self.daemon(refuse)
        args = [BINARY, '--socket', daemon.path, '--user', 'alice', 'serve']
        for result in self.time_runs(args):
            self.assertEqual(result.returncode, EX_TEMPFAIL)
        lines.append(self.summary('prefork-connect, error reply'))

        daemon = self.daemon(self.session(finish_at_once))
        args = [BINARY, '--socket', daemon.path, '--user', 'alice', 'serve']
        for result in self.time_runs(args):
            self.assertEqual(result.returncode, 0, result.stderr)
        lines.append(self.summary('prefork-connect, whole session (fake)'))
        print('\n'.join(lines), file=sys.stderr)


if __name__ == '__main__':
    unittest.main()
