"""The template protocol and the worker lifecycle, with the test service.

Real template processes, real forks, real users (useradd). Run as root.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import unittest

import support


def _need_root(test):
    if not support.is_root():
        test.skipTest('needs root: workers drop privileges to test users')


class TemplateTest(unittest.TestCase):
    """Shared set-up: a base directory, a user and a ready template."""

    template_env = None

    def setUp(self):
        _need_root(self)
        self.base = support.make_base_dir(self)
        self.user = support.make_user(self, self.base)
        self.template = support.Template(self, self.base,
                                         env=self.template_env)
        self.ready = self.template.ready()

    def bind(self, worker_id, args, **overrides):
        """Fork and bind a worker; return (pid, directory)."""
        pid, directory = self.template.fork(worker_id)
        event = self.template.bind(
            worker_id, support.binding(self.user, args, **overrides))
        self.assertEqual(event, ['bound', worker_id],
                         self.template.log())
        return pid, directory

    def run_session(self, worker_id, args, data=b'', **overrides):
        """Bind, open the FIFOs, talk; return (pid, out, err, exited)."""
        pid, directory = self.bind(worker_id, args, **overrides)
        session = support.Session(directory)
        self.addCleanup(session.close)
        out, err = session.communicate(data)
        exited = self.template.expect('exited')
        self.assertEqual(exited[1:3], [worker_id, str(pid)])
        return pid, out, err, exited[3]


class StartupTest(TemplateTest):
    """The ready event and the parked state."""

    def test_ready_names_pid_service_and_warm_ms(self):
        self.assertEqual(self.ready[1], str(self.template.process.pid))
        self.assertEqual(self.ready[2], 'test')
        self.assertGreaterEqual(int(self.ready[3]), 0)
        self.assertEqual(len(self.ready), 4)

    def test_parked_worker_has_private_directory_and_fifos(self):
        pid, directory = self.template.fork('w1')
        self.assertEqual(directory,
                         os.path.join(self.template.worker_dir, 'w1'))
        info = os.lstat(directory)
        self.assertTrue(stat.S_ISDIR(info.st_mode))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o700)
        self.assertEqual(info.st_uid, os.geteuid())
        self.assertEqual(sorted(os.listdir(directory)),
                         ['stderr', 'stdin', 'stdout'])
        for name in ('stdin', 'stdout', 'stderr'):
            info = os.lstat(os.path.join(directory, name))
            self.assertTrue(stat.S_ISFIFO(info.st_mode), name)
            self.assertEqual(stat.S_IMODE(info.st_mode), 0o600, name)
            self.assertEqual(info.st_uid, os.geteuid(), name)

    def test_parked_worker_holds_no_template_pipes(self):
        pid, _ = self.template.fork('w1')
        fds = {int(fd): os.readlink('/proc/%d/fd/%s' % (pid, fd))
               for fd in os.listdir('/proc/%d/fd' % pid)}
        self.assertEqual(fds[0], '/dev/null')
        self.assertEqual(fds[1], '/dev/null')
        # fd 2 is the template's log until bind, plus one socket.
        others = [target for fd, target in fds.items() if fd > 2]
        self.assertEqual(len(others), 1, fds)
        self.assertTrue(others[0].startswith('socket:'), fds)

    def test_worker_waiting_for_fifos_has_dropped_and_closed_all(self):
        pid, directory = self.bind('w1', ['echo'])
        # Bound but no FIFO open yet: it must already be the user, with
        # nothing open but /dev/null on 0 and 1 and the log on 2.
        with open('/proc/%d/status' % pid) as status:
            ids = {line.split(':')[0]: line.split()[1:]
                   for line in status if line.startswith(('Uid', 'Gid'))}
        self.assertEqual(ids['Uid'], [str(self.user.uid)] * 4)
        self.assertEqual(ids['Gid'], [str(self.user.gid)] * 4)
        self.assertEqual(sorted(os.listdir('/proc/%d/fd' % pid)),
                         ['0', '1', '2'])
        support.Session(directory).communicate()
        self.assertEqual(self.template.expect('exited')[3], 'code:0')

    def test_worker_dir_is_not_writable_by_others(self):
        info = os.stat(self.template.worker_dir)
        self.assertEqual(stat.S_IMODE(info.st_mode) & 0o022, 0)


class BoundIdentityTest(TemplateTest):
    """What a bound worker is: ids, groups, environment, fds."""

    template_env = dict(support.MINIMAL_ENV,
                        PREFORK_TEST_SECRET='do-not-leak-7f3a')

    def setUp(self):
        super().setUp()
        self.extra = support.make_user(self, self.base, 'g')
        subprocess.run(['usermod', '-a', '-G', self.extra.name,
                        self.user.name], check=True)

    def whoami(self, **overrides):
        pid, out, err, status = self.run_session('w1', ['whoami'],
                                                 **overrides)
        self.assertEqual(status, 'code:0', err)
        return pid, json.loads(out)

    def test_all_six_ids_are_the_user(self):
        _, info = self.whoami()
        self.assertEqual(info['resuid'], [self.user.uid] * 3)
        self.assertEqual(info['resgid'], [self.user.gid] * 3)

    def test_groups_are_exactly_the_binding_groups(self):
        _, info = self.whoami()
        self.assertEqual(info['groups'],
                         sorted([self.user.gid, self.extra.gid]))

    def test_root_cannot_be_regained(self):
        _, info = self.whoami()
        self.assertEqual(info['setuid0'], 'error EPERM')
        self.assertEqual(info['no_new_privs'], 1)
        self.assertEqual(info['dumpable'], 0)
        self.assertEqual(info['capabilities'],
                         {'CapAmb': 0, 'CapEff': 0, 'CapInh': 0,
                          'CapPrm': 0})

    def test_environment_is_the_allowlist_only(self):
        env = {'LANG': 'C.UTF-8', 'BRZ_EMAIL': 'Alice <a@example.com>'}
        _, info = self.whoami(env=env)
        expected = dict(env, HOME=self.user.home, USER=self.user.name,
                        LOGNAME=self.user.name, PATH='/usr/bin:/bin')
        self.assertEqual(info['environ'], expected)
        self.assertNotIn('do-not-leak', self.template.log())

    def test_binding_cannot_override_the_fixed_variables(self):
        _, info = self.whoami(env={'PATH': '/evil', 'HOME': '/'})
        self.assertEqual(info['environ']['PATH'], '/usr/bin:/bin')
        self.assertEqual(info['environ']['HOME'], self.user.home)

    def test_only_fds_0_1_2_are_open(self):
        _, info = self.whoami()
        self.assertEqual(info['fds'], [0, 1, 2])

    def test_cwd_is_home_and_parent_is_the_template(self):
        _, info = self.whoami()
        self.assertEqual(info['cwd'], self.user.home)
        self.assertEqual(info['ppid'], self.template.process.pid)
        self.assertEqual(info['parent_death_signal'], 0)

    def test_cwd_falls_back_to_root_without_home(self):
        _, info = self.whoami(home='/nonexistent-prefork-home')
        self.assertEqual(info['cwd'], '/')

    def test_rlimits_are_applied(self):
        pid, directory = self.bind(
            'w1', ['sleep', '2000'],
            rlimits={'nofile': 77, 'fsize': 1 << 20})
        session = support.Session(directory)
        self.addCleanup(session.close)
        with open('/proc/%d/limits' % pid) as limits:
            text = limits.read()
        self.assertRegex(text, r'Max open files\s+77\s+77')
        self.assertRegex(text, r'Max file size\s+1048576\s+1048576')
        session.communicate()
        self.assertEqual(self.template.expect('exited')[3], 'code:0')


class SessionTest(TemplateTest):
    """FIFOs, exit statuses and isolation of a session."""

    def test_fifos_are_unlinked_once_open(self):
        pid, directory = self.bind('w1', ['echo'])
        session = support.Session(directory)
        self.addCleanup(session.close)
        deadline = time.monotonic() + 10
        while os.listdir(directory) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(os.listdir(directory), [])
        out, _ = session.communicate(b'hello through fifos\n')
        self.assertEqual(out, b'hello through fifos\n')
        self.assertEqual(self.template.expect('exited')[1:],
                         ['w1', str(pid), 'code:0'])
        self.assertFalse(os.path.exists(directory))

    def test_a_user_tree_too_deep_for_python_is_removed_safely(self):
        # What a user can leave in the directory it owns: 3000 nested
        # directories (deeper than Python's recursion limit; this once
        # crashed the template) and a symlink to a file that must survive.
        pid, directory = self.bind('w1', ['echo'])
        session = support.Session(directory)
        self.addCleanup(session.close)
        victim = os.path.join(self.base, 'victim')
        with open(victim, 'w') as handle:
            handle.write('keep me\n')
        os.symlink(self.base, os.path.join(directory, 'escape'))
        level = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(3000):
            os.mkdir('a', dir_fd=level)
            deeper = os.open('a', os.O_RDONLY | os.O_DIRECTORY, dir_fd=level)
            os.close(level)
            level = deeper
        os.close(level)
        session.communicate(b'')
        self.assertEqual(self.template.expect('exited')[1:],
                         ['w1', str(pid), 'code:0'])
        self.assertFalse(os.path.exists(directory))
        self.assertTrue(os.path.exists(victim))
        # The template lives on and serves the next worker.
        self.template.fork('w2')

    def test_concurrent_sessions_are_each_reaped_once(self):
        sessions = {}
        for number in range(8):
            worker_id = 'w%d' % number
            pid, directory = self.bind(worker_id, ['echo'])
            sessions[worker_id] = (pid, support.Session(directory))
            self.addCleanup(sessions[worker_id][1].close)
        for worker_id, (_, session) in sessions.items():
            session.stdin.write(worker_id.encode() * 1000)
        for worker_id, (_, session) in sessions.items():
            out, _ = session.communicate()
            self.assertEqual(out, worker_id.encode() * 1000)
        exited = sorted(tuple(self.template.expect('exited')[1:])
                        for _ in sessions)
        self.assertEqual(exited, sorted((worker_id, str(pid), 'code:0')
                                        for worker_id, (pid, _)
                                        in sessions.items()))
        self.assertEqual(os.listdir(self.template.worker_dir), [])

    def test_fifo_open_timeout_exits_75_and_cleans_up(self):
        pid, directory = self.bind('w1', ['echo'],
                                   fifo_open_timeout_ms=300)
        exited = self.template.expect('exited', timeout=10)
        self.assertEqual(exited[1:], ['w1', str(pid), 'code:75'])
        self.assertFalse(os.path.exists(directory))
        self.assertIn('FIFOs not opened within 300 ms',
                      self.template.log())

    def test_exit_code_is_reported(self):
        _, _, _, status = self.run_session('w1', ['exit', '3'])
        self.assertEqual(status, 'code:3')

    def test_death_by_signal_is_reported(self):
        _, _, _, status = self.run_session('w1', ['kill', 'TERM'])
        self.assertEqual(status, 'signal:15')
        _, _, _, status = self.run_session('w2', ['kill', '9'])
        self.assertEqual(status, 'signal:9')

    def test_stderr_reaches_the_session(self):
        _, out, err, status = self.run_session(
            'w1', ['stderr', 'to', 'the', 'client'])
        self.assertEqual((out, err, status),
                         (b'', b'to the client\n', 'code:0'))

    def test_unknown_command_exits_2(self):
        _, _, err, status = self.run_session('w1', ['frobnicate'])
        self.assertEqual(status, 'code:2')
        self.assertIn(b'unknown command', err)

    def test_worker_cannot_read_root_files_or_signal_the_template(self):
        _, out, _, _ = self.run_session('w1', ['read', '/etc/shadow'])
        self.assertEqual(out, b'error EACCES\n')
        _, out, _, _ = self.run_session(
            'w2', ['signal', str(self.template.process.pid), 'TERM'])
        self.assertEqual(out, b'error EPERM\n')
        self.assertIsNone(self.template.process.poll())


class CallerAccessTest(TemplateTest):
    """Who may open the FIFOs of a bound worker."""

    def setUp(self):
        super().setUp()
        self.frontend = support.make_user(self, self.base, 'f')
        self.other = support.make_user(self, self.base, 'o')

    def try_open(self, user, path, mode):
        code = ('import os,sys\n'
                'try:\n'
                ' os.close(os.open(sys.argv[1], int(sys.argv[2])'
                ' | os.O_NONBLOCK))\n'
                ' print("ok")\n'
                'except OSError as e:\n'
                ' import errno; print(errno.errorcode[e.errno])\n')
        result = subprocess.run(
            [support.PYTHON, '-E', '-s', '-c', code, path, str(mode)],
            user=user.uid, group=user.gid, extra_groups=[],
            capture_output=True, text=True, timeout=30)
        return result.stdout.strip()

    def test_frontend_caller_gets_group_access_only(self):
        pid, directory = self.bind('w1', ['echo'], caller=self.frontend)
        info = os.stat(directory)
        self.assertEqual((info.st_uid, info.st_gid),
                         (self.user.uid, self.frontend.gid))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o710)
        for name in ('stdin', 'stdout', 'stderr'):
            info = os.stat(os.path.join(directory, name))
            self.assertEqual((info.st_uid, info.st_gid),
                             (self.user.uid, self.frontend.gid))
            self.assertEqual(stat.S_IMODE(info.st_mode), 0o660)
        stdout = os.path.join(directory, 'stdout')
        self.assertEqual(self.try_open(self.other, stdout, os.O_RDONLY),
                         'EACCES')
        self.assertEqual(self.try_open(self.frontend, stdout, os.O_RDONLY),
                         'ok')
        support.kill_quietly(pid)
        self.template.expect('exited')

    def test_user_as_caller_gets_a_private_directory(self):
        pid, directory = self.bind('w1', ['echo'], caller=self.user)
        info = os.stat(directory)
        self.assertEqual((info.st_uid, info.st_gid),
                         (self.user.uid, self.user.gid))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o700)
        fifo = os.path.join(directory, 'stdin')
        self.assertEqual(stat.S_IMODE(os.stat(fifo).st_mode), 0o600)
        self.assertEqual(self.try_open(self.frontend, fifo, os.O_RDONLY),
                         'EACCES')
        support.kill_quietly(pid)
        self.template.expect('exited')


class BindingRefusedTest(TemplateTest):
    """Bindings the worker refuses: bind-failed, then exit 70."""

    def refused(self, binding_text):
        pid, directory = self.template.fork('w1')
        event = self.template.bind('w1', binding_text)
        self.assertEqual(event[:2], ['bind-failed', 'w1'])
        exited = self.template.expect('exited')
        self.assertEqual(exited[1:], ['w1', str(pid), 'code:70'])
        self.assertFalse(os.path.exists(directory))
        return ' '.join(event[2:])

    def test_not_json(self):
        self.assertIn('not valid JSON', self.refused('{not json'))

    def test_uid_zero(self):
        reason = self.refused(support.binding(self.user, ['echo'], uid=0))
        self.assertIn('uid 0 is refused', reason)

    def test_unknown_key(self):
        reason = self.refused(
            support.binding(self.user, ['echo'], shell='/bin/sh'))
        self.assertIn("unknown key 'shell'", reason)

    def test_wrong_types(self):
        for key, value in (('uid', '1000'), ('groups', [1, 'x']),
                           ('home', 'relative'), ('args', 'echo'),
                           ('fifo_open_timeout_ms', 0),
                           ('rlimits', {'stack': 1}), ('gid', True)):
            with self.subTest(key=key):
                text = json.loads(support.binding(self.user, ['echo']))
                text[key] = value
                reason = self.refused(json.dumps(text))
                self.assertIn(key.split('_')[0].rstrip('s'), reason)

    def test_loader_variables_are_refused(self):
        reason = self.refused(support.binding(
            self.user, ['echo'], env={'LD_PRELOAD': '/tmp/x.so'}))
        self.assertIn('LD_PRELOAD is refused', reason)


class BadInputTest(TemplateTest):
    """Malformed commands are logged and ignored; the loop goes on."""

    def test_bad_lines_do_not_stop_the_template(self):
        for line in (b'garbage', b'fork', b'fork w1 w2', b'fork bad-id',
                     b'fork w1\x00', b'fork \xff\xfe', b'fork  w1',
                     b'fork w1 ', b'fork w1\r', b'bind w1',
                     b'bind w99 {}', b'stop w99', b'fork w1234567890123',
                     b'x' * (10 * 1024 * 1024), b'FORK w1'):
            self.template.send(line)
        self.template.fork('w1')
        self.template.send('fork w1')
        self.template.fork('w2')
        self.assertIsNone(self.template.process.poll())
        log = self.template.log()
        self.assertIn('line-too-long', log)
        self.assertIn('bad-request', log)
        self.assertIn('fork w1 refused: id already in use', log)
        self.assertIn('bind w99 refused: no such worker', log)
        self.assertEqual(self.template.bind('w1', '{bad')[:2],
                         ['bind-failed', 'w1'])
        self.assertEqual(self.template.expect('exited')[3], 'code:70')

    def test_parked_worker_killed_from_outside_is_reported(self):
        pid, directory = self.template.fork('w1')
        os.kill(pid, signal.SIGKILL)
        self.assertEqual(self.template.expect('exited')[1:],
                         ['w1', str(pid), 'signal:9'])
        self.assertFalse(os.path.exists(directory))
        self.template.send('bind w1 {}')
        self.template.fork('w2')
        self.assertIn('bind w1 refused: no such worker',
                      self.template.log())

    def test_stop_kills_only_parked_workers(self):
        pid, directory = self.template.fork('w1')
        self.template.send('stop w1')
        self.assertEqual(self.template.expect('exited')[1:],
                         ['w1', str(pid), 'signal:9'])
        self.assertFalse(os.path.exists(directory))
        bound_pid, _ = self.bind('w2', ['sleep', '500'])
        self.template.send('stop w2')
        self.template.fork('w3')
        self.assertIn('stop w2 refused: worker is bound', self.template.log())
        self.assertTrue(support.process_exists(bound_pid))
        support.kill_quietly(bound_pid)


class ShutdownTest(TemplateTest):
    """End of input and SIGTERM kill parked workers, spare bound ones."""

    def check_shutdown(self, stop):
        parked = [self.template.fork('w1'), self.template.fork('w2')]
        bound_pid, directory = self.bind('w3', ['echo'])
        session = support.Session(directory)
        self.addCleanup(session.close)
        self.addCleanup(support.kill_quietly, bound_pid)
        stop()
        exited = [self.template.expect('exited') for _ in parked]
        self.assertEqual(sorted((e[1], e[2], e[3]) for e in exited),
                         [('w1', str(parked[0][0]), 'signal:9'),
                          ('w2', str(parked[1][0]), 'signal:9')])
        self.assertEqual(self.template.wait(), 0)
        for pid, directory in parked:
            self.assertFalse(support.process_exists(pid))
            self.assertFalse(os.path.exists(directory))
        # The bound session goes on and finishes normally.
        self.assertTrue(support.process_exists(bound_pid))
        out, _ = session.communicate(b'still served\n')
        self.assertEqual(out, b'still served\n')

    def test_end_of_input(self):
        self.check_shutdown(self.template.close_stdin)

    def test_sigterm(self):
        self.check_shutdown(
            lambda: self.template.process.send_signal(signal.SIGTERM))


class ParentDeathTest(unittest.TestCase):
    """If preforkd dies, the template and parked workers die too."""

    def setUp(self):
        _need_root(self)
        self.base = support.make_base_dir(self)
        self.user = support.make_user(self, self.base)

    def test_template_and_parked_workers_die_with_their_parent(self):
        # A stand-in for preforkd: it starts the template on its own
        # stdin/stdout (our pipes) and then just waits.
        daemon_code = ('import subprocess, sys\n'
                       'sys.exit(subprocess.call(sys.argv[1:]))\n')
        template = support.Template(
            self, self.base,
            wrapper=[support.PYTHON, '-E', '-s', '-c', daemon_code])
        daemon = template.process
        template_pid = int(template.ready()[1])
        self.addCleanup(support.kill_quietly, template_pid)
        parked_pid, _ = template.fork('w1')
        bound_pid, directory = template.fork('w2')
        self.addCleanup(support.kill_quietly, parked_pid)
        self.addCleanup(support.kill_quietly, bound_pid)
        self.assertEqual(template.bind('w2', support.binding(
            self.user, ['echo'])), ['bound', 'w2'])
        session = support.Session(directory)
        self.addCleanup(session.close)

        daemon.kill()
        self.assertTrue(support.wait_gone(template_pid))
        self.assertTrue(support.wait_gone(parked_pid))
        self.assertTrue(support.process_exists(bound_pid))
        out, _ = session.communicate(b'after the daemon died\n')
        self.assertEqual(out, b'after the daemon died\n')


class StartupFailureTest(unittest.TestCase):
    """Distinct exit codes, so the supervisor stops retrying."""

    def setUp(self):
        self.base = support.make_base_dir(self)

    def run_template(self, args, source_dir=support.SOURCE_DIR):
        result = subprocess.run(
            [support.PYTHON, '-E', '-s',
             os.path.join(source_dir, 'prefork_template.py')] + args,
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=dict(support.MINIMAL_ENV), timeout=120)
        return result.returncode, result.stdout, result.stderr

    def dirs(self):
        return ['--worker-dir', os.path.join(self.base, 'workers'),
                '--warm-dir', os.path.join(self.base, 'warm')]

    def test_bad_arguments_exit_2(self):
        for args in ([], ['--service', 'nope'] + self.dirs(),
                     ['--service', 'test', '--worker-dir', 'relative',
                      '--warm-dir', '/tmp'],
                     ['--service', 'test', '--startup-ms', '-1']
                     + self.dirs(),
                     ['--service', 'test', '--worker-dir',
                      os.path.join(self.base, 'with space'),
                      '--warm-dir', os.path.join(self.base, 'warm')]):
            with self.subTest(args=args):
                code, out, err = self.run_template(args)
                self.assertEqual(code, 2, err)
                self.assertEqual(out, '')
                self.assertRegex(err, r'^ERROR template \(pid:\d+\): bad '
                                      r'arguments: ')

    def test_unsafe_worker_dir_exits_2(self):
        workers = os.path.join(self.base, 'workers')
        os.mkdir(workers)
        os.chmod(workers, 0o777)
        code, _, err = self.run_template(['--service', 'test']
                                         + self.dirs())
        self.assertEqual(code, 2)
        self.assertIn('writable by others', err)

    def test_import_failure_exits_4(self):
        source = os.path.join(self.base, 'src')
        shutil.copytree(support.SOURCE_DIR, source)
        broken = os.path.join(source, 'prefork_worker', 'services',
                              'testservice.py')
        with open(broken, 'w') as module:
            module.write('raise ImportError("simulated import failure")\n')
        code, out, err = self.run_template(
            ['--service', 'test'] + self.dirs(), source_dir=source)
        self.assertEqual(code, 4, err)
        self.assertIn('simulated import failure', err)
        self.assertEqual(out, '')

    def test_output_of_libraries_cannot_corrupt_events(self):
        source = os.path.join(self.base, 'src')
        shutil.copytree(support.SOURCE_DIR, source)
        noisy = os.path.join(source, 'prefork_worker', 'services',
                             'testservice.py')
        with open(noisy, 'a') as module:
            module.write('print("noise from python", flush=True)\n'
                         'os.write(1, b"noise from fd 1\\n")\n')
        template = support.Template(self, self.base, source_dir=source)
        self.assertEqual(template.ready()[2], 'test')
        template.close_stdin()
        self.assertEqual(template.wait(), 0)
        self.assertIn('noise from python', template.log())
        self.assertIn('noise from fd 1', template.log())

    def test_warm_up_failure_exits_5(self):
        code, out, err = self.run_template(
            ['--service', 'test', '--worker-dir',
             os.path.join(self.base, 'workers'),
             '--warm-dir', '/dev/null/warm'])
        self.assertEqual(code, 5, err)
        self.assertIn('warm-up failed', err)

    def test_startup_ms_is_paid_before_ready(self):
        started = time.monotonic()
        template = support.Template(self, self.base,
                                    extra_args=['--startup-ms', '300'])
        warm_ms = int(template.ready()[3])
        self.assertGreaterEqual(warm_ms, 300)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        template.close_stdin()
        self.assertEqual(template.wait(), 0)


class UnprivilegedTemplateTest(unittest.TestCase):
    """A template that is not root can serve its own uid only."""

    def setUp(self):
        _need_root(self)
        self.base = support.make_base_dir(self)
        self.owner = support.make_user(self, self.base, 'd')
        self.stranger = support.make_user(self, self.base, 's')
        runtime = os.path.join(self.base, 'run')
        os.mkdir(runtime)
        os.chown(runtime, self.owner.uid, self.owner.gid)
        self.template = support.Template(
            self, runtime, env=dict(support.MINIMAL_ENV),
            source_dir=support.readable_source(self.base), user=self.owner)
        self.template.ready()

    def test_serves_its_own_uid_with_no_new_privs(self):
        self.template.fork('w1')
        event = self.template.bind('w1', support.binding(
            self.owner, ['whoami'], groups=[self.owner.gid]))
        self.assertEqual(event, ['bound', 'w1'], self.template.log())
        directory = os.path.join(self.template.worker_dir, 'w1')
        out, _ = support.Session(directory).communicate()
        info = json.loads(out)
        self.assertEqual(info['resuid'], [self.owner.uid] * 3)
        self.assertEqual(info['no_new_privs'], 1)
        self.assertEqual(info['fds'], [0, 1, 2])
        self.assertEqual(self.template.expect('exited')[3], 'code:0')

    def test_refuses_another_uid(self):
        self.template.fork('w1')
        event = self.template.bind('w1', support.binding(
            self.stranger, ['whoami']))
        self.assertEqual(event[:2], ['bind-failed', 'w1'])
        self.assertIn('cannot serve uid %d' % self.stranger.uid,
                      ' '.join(event))
        self.assertEqual(self.template.expect('exited')[3], 'code:70')


if __name__ == '__main__':
    unittest.main(argv=[sys.argv[0], '-v'])
