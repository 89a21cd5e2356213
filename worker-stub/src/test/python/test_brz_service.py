"""The brz service: real Breezy smart-server sessions through the FIFOs.

The test process plays the Breezy client: it opens a bound worker's
FIFOs and speaks the smart protocol over them with Breezy's own client
medium, as ``bzr+ssh`` would over an SSH channel.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import support

sys.path.insert(0, support.SOURCE_DIR)

URL = 'bzr+ssh://prefork-test/'
SERVE_WRITABLE = ['bzr', 'serve', '--inet', '--directory=/',
                  '--allow-writes']
_STATE = []


def start_breezy():
    """Start Breezy's library state once in this process, isolated."""
    if _STATE:
        return
    home = tempfile.mkdtemp(prefix='prefork-brz-home-')
    atexit.register(shutil.rmtree, home, True)
    os.environ['BRZ_HOME'] = home
    from breezy import library_state, trace
    from breezy.bzr import bzrdir
    state = library_state.BzrLibraryState(ui=None, trace=trace.Config())
    state.__enter__()
    # Importing bzrdir sets the default format for new branches.
    _STATE.append((state, bzrdir.BzrDirMetaFormat1))


def make_branch(path, owner, revisions=2):
    """Make a standalone branch with commits at ``path``, owned by owner."""
    from breezy import controldir
    tree = controldir.ControlDir.create_standalone_workingtree(path)
    for number in range(revisions):
        with open(os.path.join(path, 'file'), 'a') as content:
            content.write('line %d\n' % number)
        if number == 0:
            tree.add(['file'])
        tree.commit('commit %d' % number, committer='Test <t@example.com>')
    subprocess.run(['chown', '-R', '%d:%d' % (owner.uid, owner.gid), path],
                   check=True)
    return tree.branch


class BrzSessionTest(unittest.TestCase):
    """One template per test; a user with a branch in its home."""

    def setUp(self):
        if not support.is_root():
            self.skipTest('needs root: workers drop privileges to users')
        start_breezy()
        self.base = support.make_base_dir(self)
        self.user = support.make_user(self, self.base)
        self.trunk = make_branch(os.path.join(self.user.home, 'trunk'),
                                 self.user)
        self.outside = os.path.join(self.base, 'outside')
        os.mkdir(self.outside)
        os.chown(self.outside, self.user.uid, self.user.gid)
        self.template = support.Template(self, self.base, service='brz')
        self.assertEqual(self.template.ready()[2], 'brz')

    def connect(self, worker_id, args, **overrides):
        """Bind a worker; return (pid, session, remote root transport)."""
        from breezy.bzr.smart import medium
        from breezy.transport import remote
        pid, directory = self.template.fork(worker_id)
        event = self.template.bind(
            worker_id, support.binding(self.user, args, **overrides))
        self.assertEqual(event, ['bound', worker_id], self.template.log())
        session = support.Session(directory)
        self.addCleanup(session.close)
        client = medium.SmartSimplePipesClientMedium(
            session.stdout, session.stdin, URL)
        return pid, session, remote.RemoteTransport(URL, medium=client)

    def finish(self, worker_id, pid, session):
        """Close the session; return (stderr bytes, exit status)."""
        _, err = session.communicate()
        exited = self.template.expect('exited')
        self.assertEqual(exited[1:3], [worker_id, str(pid)])
        return err, exited[3]

    def test_hello_and_read_a_branch(self):
        from breezy import branch
        from breezy.bzr.smart import client
        pid, session, root = self.connect('w1', SERVE_WRITABLE)
        self.assertEqual(client._SmartClient(root.get_smart_medium())
                         .call(b'hello'), (b'ok', b'2'))
        remote_trunk = branch.Branch.open_from_transport(
            root.clone('~/trunk'))
        self.assertEqual(remote_trunk.last_revision_info(),
                         self.trunk.last_revision_info())
        err, status = self.finish('w1', pid, session)
        self.assertEqual(status, 'code:0', err)
        # The parked worker rehearsed a hello before it was bound; a failed
        # rehearsal would only be logged, and silently cost milliseconds.
        self.assertNotIn('rehearsal failed', self.template.log())

    def test_push_below_writable_path_works_outside_is_refused(self):
        from breezy import errors
        pid, session, root = self.connect('w1', SERVE_WRITABLE)
        pushed = self.trunk.controldir.clone_on_transport(
            root.clone('~/pushed'))
        self.assertEqual(pushed.open_branch().last_revision_info(),
                         self.trunk.last_revision_info())
        target = root.clone(self.outside.lstrip('/') + '/pushed')
        with self.assertRaises(errors.PermissionDenied) as caught:
            self.trunk.controldir.clone_on_transport(target)
        self.assertIn('outside the writable paths', str(caught.exception))
        err, status = self.finish('w1', pid, session)
        self.assertEqual(status, 'code:0', err)

        # The push landed on disk, written as the user; outside, nothing.
        revision_file = os.path.join(self.user.home, 'pushed', '.bzr',
                                     'branch', 'last-revision')
        self.assertEqual(os.stat(revision_file).st_uid, self.user.uid)
        self.assertEqual(os.listdir(self.outside), [])

    def test_read_only_without_allow_writes(self):
        from breezy import errors
        pid, session, root = self.connect(
            'w1', ['brz', 'serve', '--inet', '--directory=/'])
        with self.assertRaises(errors.TransportNotPossible):
            self.trunk.controldir.clone_on_transport(root.clone('~/copy'))
        self.finish('w1', pid, session)
        self.assertFalse(os.path.exists(os.path.join(self.user.home,
                                                     'copy')))

    def test_read_only_with_no_writable_paths(self):
        from breezy import errors
        pid, session, root = self.connect('w1', SERVE_WRITABLE,
                                          writable_paths=[])
        with self.assertRaises(errors.TransportNotPossible):
            self.trunk.controldir.clone_on_transport(root.clone('~/copy'))
        self.finish('w1', pid, session)

    def test_directory_is_the_chroot(self):
        from breezy import branch, errors
        pid, session, root = self.connect(
            'w1', ['serve', '--inet', '--directory=' + self.user.home])
        remote_trunk = branch.Branch.open_from_transport(root.clone('trunk'))
        self.assertEqual(remote_trunk.last_revision_info(),
                         self.trunk.last_revision_info())
        with self.assertRaises(errors.NotBranchError):
            branch.Branch.open_from_transport(root.clone('../../..'))
        self.finish('w1', pid, session)

    def test_other_arguments_exit_2(self):
        for worker_id, args in (('w1', ['bzr', 'log']),
                                ('w2', ['serve', '--port=4155']),
                                ('w3', ['serve']),
                                ('w4', ['serve', '--inet', '--directory=x'])):
            with self.subTest(args=args):
                pid, directory = self.template.fork(worker_id)
                self.assertEqual(self.template.bind(
                    worker_id, support.binding(self.user, args)),
                    ['bound', worker_id])
                session = support.Session(directory)
                out, err = session.communicate()
                exited = self.template.expect('exited')
                self.assertEqual(exited[3], 'code:2')
                self.assertIn(b'brz serve: ', err)


class WritePolicyTest(unittest.TestCase):
    """The write-policy transport decorator, in this process."""

    def setUp(self):
        start_breezy()
        from prefork_worker.services import writepolicy
        from breezy import transport, urlutils
        self.writepolicy = writepolicy
        self.base = tempfile.mkdtemp(prefix='prefork-policy-')
        self.addCleanup(shutil.rmtree, self.base, True)
        self.allowed = os.path.join(self.base, 'allowed')
        os.mkdir(self.allowed)
        local = transport.get_transport_from_url(
            urlutils.local_path_to_url(self.base))
        self.policy = writepolicy.WritePolicyTransportDecorator.decorate(
            local, [self.allowed])

    def test_writes_below_the_root_pass(self):
        self.policy.put_bytes('allowed/file', b'data')
        self.policy.mkdir('allowed/dir')
        self.policy.rename('allowed/file', 'allowed/dir/file')
        self.assertEqual(self.policy.get_bytes('allowed/dir/file'), b'data')

    def test_writes_elsewhere_are_refused(self):
        from breezy import errors
        for write in (lambda t: t.put_bytes('file', b'x'),
                      lambda t: t.mkdir('dir'),
                      lambda t: t.append_bytes('file', b'x'),
                      lambda t: t.open_write_stream('file'),
                      lambda t: t.put_bytes('allowed/../file', b'x'),
                      lambda t: t.put_bytes('allowedx', b'x')):
            with self.assertRaises(errors.PermissionDenied):
                write(self.policy)
        self.assertEqual(sorted(os.listdir(self.base)), ['allowed'])

    def test_rename_out_of_the_root_is_refused(self):
        from breezy import errors
        self.policy.put_bytes('allowed/file', b'data')
        with self.assertRaises(errors.PermissionDenied):
            self.policy.rename('allowed/file', 'file')

    def test_clones_keep_the_policy(self):
        from breezy import errors
        clone = self.policy.clone('allowed')
        clone.put_bytes('file', b'ok')
        with self.assertRaises(errors.PermissionDenied):
            clone.clone('..').put_bytes('file', b'no')

    def test_symlink_out_of_the_root_is_refused(self):
        from breezy import errors
        os.mkdir(os.path.join(self.base, 'elsewhere'))
        os.symlink(os.path.join(self.base, 'elsewhere'),
                   os.path.join(self.allowed, 'link'))
        with self.assertRaises(errors.PermissionDenied):
            self.policy.put_bytes('allowed/link/file', b'x')

    def test_built_from_a_url_it_allows_nothing(self):
        from breezy import errors, transport
        self.writepolicy.register()
        fresh = transport.get_transport_from_url(self.policy.base)
        self.assertTrue(fresh.is_readonly())
        with self.assertRaises(errors.PermissionDenied):
            fresh.put_bytes('allowed/file', b'x')


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0], '-v'])
