"""Helpers for the worker-stub tests: a real template, real users.

Everything here starts real processes: the template runs under
``/usr/bin/python3 -E -s`` exactly as preforkd starts it, users are made
with ``useradd`` and removed with ``userdel -r``.
"""

import grp
import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_ROOT = os.path.dirname(os.path.dirname(HERE))
SOURCE_DIR = os.path.join(MODULE_ROOT, 'main', 'python')
TEMPLATE = os.path.join(SOURCE_DIR, 'prefork_template.py')
PYTHON = '/usr/bin/python3'
EVENT_TIMEOUT_S = 30
MINIMAL_ENV = {'PATH': '/usr/bin:/bin', 'LANG': 'C.UTF-8'}


def is_root():
    """Return True when the tests run as root."""
    return os.geteuid() == 0


def make_base_dir(test):
    """Make a temporary directory users can traverse; clean up after."""
    base = tempfile.mkdtemp(prefix='prefork-test-')
    os.chmod(base, 0o755)
    test.addCleanup(shutil.rmtree, base, True)
    return base


class User:
    """A local user made with useradd, with a home below ``base``."""

    def __init__(self, base, tag='u'):
        self.name = 'pft%s%s' % (tag, uuid.uuid4().hex[:8])
        self.home = os.path.join(base, 'home-' + self.name)
        subprocess.run(['useradd', '--create-home', '--home-dir', self.home,
                        '--shell', '/bin/sh', '--user-group', self.name],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        os.chmod(self.home, 0o755)

    def groups(self):
        """Return the user's gids: primary plus supplementary."""
        gids = {self.gid}
        gids.update(group.gr_gid for group in grp.getgrall()
                    if self.name in group.gr_mem)
        return sorted(gids)

    def delete(self):
        """Remove the user, its group and its home."""
        subprocess.run(['userdel', '--remove', self.name],
                       capture_output=True)
        # userdel keeps a user's group while another user is a member.
        subprocess.run(['groupdel', self.name], capture_output=True)


def make_user(test, base, tag='u'):
    """Create a user that the test's cleanup deletes."""
    user = User(base, tag)
    test.addCleanup(user.delete)
    return user


def binding(user, args, caller=None, **overrides):
    """Return binding JSON text for ``user`` (a User) and ``args``."""
    data = {
        'user': user.name, 'uid': user.uid, 'gid': user.gid,
        'groups': user.groups(), 'home': user.home,
        'caller_uid': caller.uid if caller else 0,
        'caller_gid': caller.gid if caller else 0,
        'args': list(args), 'env': {'LANG': 'C.UTF-8'},
        'fifo_open_timeout_ms': 10000, 'writable_paths': ['~'],
        'rlimits': {'nofile': 256},
    }
    data.update(overrides)
    return json.dumps(data)


def readable_source(base):
    """Copy the template's source below ``base`` and return the copy.

    A template run as another user must read its own code, and the
    checkout may sit in a directory only root can enter (a fresh clone
    made by mktemp -d is mode 0700).
    """
    copy = os.path.join(base, 'source')
    shutil.copytree(SOURCE_DIR, copy,
                    ignore=shutil.ignore_patterns('__pycache__'))
    for root, dirs, files in os.walk(copy):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return copy


class Template:
    """A running template process and its event stream."""

    def __init__(self, test, base, service='test', extra_args=(),
                 source_dir=SOURCE_DIR, env=None, user=None, wrapper=()):
        """Start the template; ``wrapper`` is an argv prefix to start it
        through, ``user`` a User to run it as."""
        self.worker_dir = os.path.join(base, 'workers')
        self.warm_dir = os.path.join(base, 'warm')
        self.log_path = os.path.join(base, 'template-%s.log'
                                     % uuid.uuid4().hex[:6])
        self._buffer = b''
        command = list(wrapper) + [
            PYTHON, '-E', '-s',
            os.path.join(source_dir, 'prefork_template.py'),
            '--service', service, '--worker-dir', self.worker_dir,
            '--warm-dir', self.warm_dir] + list(extra_args)
        identity = {}
        if user is not None:
            identity = dict(user=user.uid, group=user.gid, extra_groups=[])
        with open(self.log_path, 'wb') as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, env=env if env is not None else MINIMAL_ENV,
                **identity)
        test.addCleanup(self.kill)

    def send(self, line):
        """Write one command line (str or bytes) to the template."""
        data = line if isinstance(line, bytes) else line.encode('utf-8')
        self.process.stdin.write(data + b'\n')
        self.process.stdin.flush()

    def event(self, timeout=EVENT_TIMEOUT_S):
        """Return the next event line as a list of fields."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b'\n' not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError('no event within %s s; log:\n%s'
                                     % (timeout, self.log()))
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError('template closed stdout; log:\n%s'
                                     % self.log())
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b'\n', 1)
        return line.decode('utf-8').split(' ')

    def expect(self, verb, timeout=EVENT_TIMEOUT_S):
        """Return the next event, asserting its verb."""
        event = self.event(timeout)
        if event[0] != verb:
            raise AssertionError('expected %s, got %r; log:\n%s'
                                 % (verb, event, self.log()))
        return event

    def ready(self):
        """Wait for ``ready``; return its fields."""
        return self.expect('ready', timeout=120)

    def fork(self, worker_id):
        """Fork a worker, wait for ``parked``; return (pid, dir)."""
        self.send('fork ' + worker_id)
        event = self.expect('parked')
        assert event[1] == worker_id, event
        return int(event[2]), event[3]

    def bind(self, worker_id, binding_json):
        """Send a binding; return the next event."""
        self.send('bind %s %s' % (worker_id, binding_json))
        return self.event()

    def close_stdin(self):
        """End the template's input."""
        self.process.stdin.close()

    def wait(self, timeout=EVENT_TIMEOUT_S):
        """Wait for the template to exit; return its exit code."""
        return self.process.wait(timeout)

    def log(self):
        """Return the template's log so far."""
        with open(self.log_path, encoding='utf-8', errors='replace') as log:
            return log.read()

    def kill(self):
        """Stop the template if it still runs (test cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


class Session:
    """The client side of a bound worker: the three FIFOs, opened."""

    def __init__(self, directory, timeout=EVENT_TIMEOUT_S):
        # The order of PROTOCOL.md: stdin for writing, then stdout and
        # stderr for reading; the worker opens them in the same order.
        # An alarm bounds the blocking opens so a dead worker fails the
        # test instead of hanging it.
        with _deadline(timeout):
            self.stdin = open(os.path.join(directory, 'stdin'), 'wb',
                              buffering=0)
            self.stdout = open(os.path.join(directory, 'stdout'), 'rb',
                               buffering=0)
            self.stderr = open(os.path.join(directory, 'stderr'), 'rb',
                               buffering=0)

    def communicate(self, data=b''):
        """Send ``data``, close stdin, return (stdout, stderr) bytes."""
        if data:
            self.stdin.write(data)
        self.stdin.close()
        out = self.stdout.read()
        err = self.stderr.read()
        self.stdout.close()
        self.stderr.close()
        return out, err

    def close(self):
        """Close whatever is still open."""
        for stream in (self.stdin, self.stdout, self.stderr):
            if not stream.closed:
                stream.close()


class _Deadline(Exception):
    pass


class _deadline:
    """Raise AssertionError if the block takes longer than ``seconds``."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        def expire(signum, frame):
            raise _Deadline()
        self.old = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, kind, value, traceback):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)
        if kind is _Deadline:
            raise AssertionError('FIFOs not opened within %s s'
                                 % self.seconds)
        return False


def process_exists(pid):
    """Return True when ``pid`` is a live, not yet reaped process."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def wait_gone(pid, timeout=10):
    """Wait until ``pid`` no longer runs; return True if it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_exists(pid):
            return True
        time.sleep(0.02)
    return False


def kill_quietly(pid):
    """SIGKILL ``pid`` if it still exists (cleanup of our own children)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
