"""The ``brz`` service: Breezy's smart server, as ``brz serve --inet``.

Session arguments: ``[bzr|brz] serve --inet [--directory=PATH]
[--allow-writes]``, in any order after ``serve``; anything else exits 2.

The session is served like ``brz serve --inet``: the served directory is
chrooted, ``~`` and ``~user`` are expanded, the smart protocol runs over
fds 0 and 1, the UI is silent and locks never wait. Writes need both
``--allow-writes`` and a path at or below one of the binding's
``writable_paths`` (see ``writepolicy``); otherwise the session is
read-only.

The template loads Breezy with an empty home of its own and only the
system's plugins (``BRZ_PLUGIN_PATH=-user``), and warms up by serving two
real conversations in-process: one that branches from a branch of its
own and pushes a commit back, one that reads. A worker sets its server
up (``prepare``) before its FIFOs are open, so that only serving is left
once the client is there. Breezy's debug log (``brz.log``) is not
written, and per-user plugins are never loaded.
"""

import logging
import os
import sys
import threading

from breezy import controldir, library_state, plugin, trace, urlutils
from breezy import branch as branch_mod
from breezy import transport as transport_mod
from breezy.bzr.smart import client as smart_client
from breezy.bzr.smart import medium as smart_medium
from breezy.bzr.smart import server as smart_server
from breezy.transport import remote

from ..log import log, one_line
from . import writepolicy

EXIT_USAGE = 2
WARM_TIMEOUT_S = 60
WARM_URL = 'bzr+ssh://prefork-warm-up/'
COMMITTER = 'prefork warm-up <prefork@localhost>'


def load(home):
    """Start Breezy's library state with an empty home, load plugins."""
    os.environ['BRZ_HOME'] = home
    os.environ['BRZ_PLUGIN_PATH'] = '-user'
    state = library_state.BzrLibraryState(ui=None, trace=trace.Config())
    state.__enter__()
    _route_brz_log(_TemplateLogHandler(), logging.WARNING)
    plugin.load_plugins()
    writepolicy.register()


def warm(scratch_dir):
    """Serve two real conversations in-process; raise if one fails.

    The first writes (branch, commit, push back) through the write
    policy; the second reads through a read-only transport with the idle
    timeout taken from the configuration, which is the path most
    sessions take.
    """
    served = os.path.join(scratch_dir, 'served')
    os.mkdir(served)
    _make_branch(os.path.join(served, 'trunk'))
    _converse(_PushClient(scratch_dir), served, [served], WARM_TIMEOUT_S)
    _converse(_ReadClient(), served, [], None)


def rehearse():
    """Walk a parked worker through one hello before it is bound.

    A forked child pays a copy-on-write page fault for every page of
    the template's heap it touches first: the server's set-up alone
    costs about 3 ms that way, though it runs under 800 Python calls. A
    parked worker has time to spare, so it takes those faults before
    any binding arrives. It serves "/" read-only and only answers
    hello: no user's data is read, and nothing of the rehearsal is left
    (the server restores the globals it changed when it stops).
    """
    _converse(_HelloClient(), '/', [], None)


def _converse(client, served, writable_paths, timeout):
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    client.start_with(to_client_r, to_server_w)

    # The server side runs here, in the main thread, so that the
    # template itself ends up with the request handlers loaded.
    with os.fdopen(to_server_r, 'rb') as in_file, \
            os.fdopen(to_client_w, 'wb') as out_file:
        serve(in_file, out_file, served, writable_paths, timeout)
    client.join(WARM_TIMEOUT_S)
    if client.is_alive():
        raise RuntimeError('warm-up client did not finish')
    if client.error is not None:
        raise client.error


def prepare(session):
    """Set the session's server up on fds 0 and 1; return its runner.

    Everything but serving happens here, before the FIFOs are open: the
    file objects wrap fds 0 and 1, which the FIFOs replace later, and
    the idle timeout comes from the user's own configuration.
    """
    options = parse_args(session.binding.args)
    if isinstance(options, str):
        return lambda: _usage(options)
    directory, allow_writes = options
    writable = session.binding.writable_paths if allow_writes else ()
    _route_brz_log(_SESSION_LOG_HANDLER)
    factory = _set_up(os.fdopen(0, 'rb'), os.fdopen(1, 'wb'),
                      directory or os.getcwd(), writable, None)
    return lambda: _serve_and_tear_down(factory)


def _usage(message):
    os.write(2, ('brz serve: %s\n' % message).encode('utf-8'))
    return EXIT_USAGE


def parse_args(args):
    """Return ``(directory, allow_writes)`` or a usage message (str)."""
    args = list(args)
    if args and args[0] in ('bzr', 'brz'):
        args.pop(0)
    if not args or args[0] != 'serve':
        return 'only "serve --inet" is supported'
    directory, allow_writes, inet = None, False, False
    for arg in args[1:]:
        if arg == '--inet' and not inet:
            inet = True
        elif arg == '--allow-writes' and not allow_writes:
            allow_writes = True
        elif arg.startswith('--directory=') and directory is None:
            directory = arg[len('--directory='):]
            if not directory.startswith('/'):
                return '--directory must be an absolute path'
        else:
            return 'unsupported argument %s' % one_line(arg, 100)
    if not inet:
        return 'only "serve --inet" is supported'
    return directory, allow_writes


def serve(in_file, out_file, directory, writable_paths, timeout=None):
    """Serve the smart protocol on two binary files until the end.

    ``writable_paths`` empty means read-only. ``timeout`` None takes the
    idle timeout from Breezy's configuration, as ``brz serve`` does.
    """
    factory = _set_up(in_file, out_file, directory, writable_paths,
                      timeout)
    _serve_and_tear_down(factory)


def _set_up(in_file, out_file, directory, writable_paths, timeout):
    backing = _backing_transport(directory, writable_paths)
    factory = _ServerFactory(in_file, out_file, directory)
    factory.set_up(backing, None, None, True, timeout)
    return factory


def _serve_and_tear_down(factory):
    try:
        factory.smart_server.serve()
    finally:
        factory.tear_down()
    return 0


def _backing_transport(directory, writable_paths):
    url = urlutils.local_path_to_url(directory)
    if not writable_paths:
        return transport_mod.get_transport_from_url('readonly+' + url)
    local = transport_mod.get_transport_from_url(url)
    return writepolicy.WritePolicyTransportDecorator.decorate(
        local, writable_paths)


class _ServerFactory(smart_server.BzrServerFactory):
    """BzrServerFactory serving given files, with a known base path."""

    def __init__(self, in_file, out_file, directory):
        base_path = os.path.join(os.path.normpath(directory), '')
        super().__init__(get_base_path=lambda transport: base_path)
        self._files = (in_file, out_file)

    def _get_stdin_stdout(self):
        return self._files


def _make_branch(path):
    tree = controldir.ControlDir.create_standalone_workingtree(path)
    with open(os.path.join(path, 'README'), 'w') as readme:
        readme.write('prefork warm-up\n')
    tree.add(['README'])
    tree.commit('warm-up', committer=COMMITTER)


class _WarmClient(threading.Thread):
    """The client half of a warm-up conversation, in a thread."""

    def __init__(self):
        super().__init__(name='prefork-warm-up', daemon=True)
        self.read_fd = self.write_fd = -1
        self.error = None

    def start_with(self, read_fd, write_fd):
        """Start talking over the given pipe ends (closed at the end)."""
        self.read_fd, self.write_fd = read_fd, write_fd
        self.start()

    def run(self):
        # Closing our ends in every case lets the server see the end of
        # the conversation and return.
        try:
            with os.fdopen(self.read_fd, 'rb') as from_server, \
                    os.fdopen(self.write_fd, 'wb') as to_server:
                medium = smart_medium.SmartSimplePipesClientMedium(
                    from_server, to_server, WARM_URL)
                reply = smart_client._SmartClient(medium).call(b'hello')
                if reply[0] != b'ok':
                    raise RuntimeError('hello answered %r' % (reply,))
                self.after_hello(medium)
        except Exception as error:
            self.error = error

    def after_hello(self, medium):
        """Open the served branch and use it."""
        root = remote.RemoteTransport(WARM_URL, medium=medium)
        self.converse(branch_mod.Branch.open_from_transport(
            root.clone('trunk')))

    def converse(self, trunk):
        """Use the opened remote branch."""
        raise NotImplementedError(self.converse)


class _HelloClient(_WarmClient):
    """Say hello and leave: what every session does first."""

    def after_hello(self, medium):
        """Nothing more: the rehearsal serves no branch."""


class _PushClient(_WarmClient):
    """Branch from the served branch, commit, push back."""

    def __init__(self, scratch_dir):
        super().__init__()
        self.scratch_dir = scratch_dir

    def converse(self, trunk):
        """Sprout, commit and push: the write path."""
        clone_path = os.path.join(self.scratch_dir, 'clone')
        tree = trunk.controldir.sprout(clone_path).open_workingtree()
        with open(os.path.join(clone_path, 'README'), 'a') as readme:
            readme.write('pushed back\n')
        tree.commit('warm-up push', committer=COMMITTER)
        tree.branch.push(trunk)


class _ReadClient(_WarmClient):
    """Read the branch's tip and its last revision."""

    def converse(self, trunk):
        """The read path: tip, tags, one revision."""
        revno, revision_id = trunk.last_revision_info()
        trunk.tags.get_tag_dict()
        trunk.repository.get_revision(revision_id)


class _TemplateLogHandler(logging.Handler):
    """Breezy's messages as template log lines (``LEVEL brz: ...``)."""

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        log(_level_name(record.levelno), 'brz (pid:%d): %s'
            % (os.getpid(), text))


def _level_name(levelno):
    for name, value in (('ERROR', logging.ERROR),
                        ('WARNING', logging.WARNING),
                        ('INFO', logging.INFO)):
        if levelno >= value:
            return name
    return 'DEBUG'


# In a session, Breezy speaks to the client's stderr, as brz does. Made
# once in the template: sys.stderr wraps fd 2, which is the session's
# stderr FIFO by the time anything is logged.
_SESSION_LOG_HANDLER = logging.StreamHandler(sys.stderr)


def _route_brz_log(handler, level=logging.INFO):
    logger = logging.getLogger('brz')
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
