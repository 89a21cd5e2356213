"""probe.py: connection-time measurement against real brz processes."""

import json
import os
import subprocess
import unittest

import support

PROBE = os.path.join(support.SOURCE_DIR, 'prefork_worker', 'probe.py')


def run_probe(args, timeout=120):
    """Run probe.py; return (exit code, parsed JSON or None, stderr)."""
    result = subprocess.run([support.PYTHON, '-E', '-s', PROBE] + args,
                            capture_output=True, text=True,
                            env=dict(support.MINIMAL_ENV), timeout=timeout)
    parsed = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, parsed, result.stderr


class ProbeTest(unittest.TestCase):
    """Runs, alternation, statuses, users, timeouts."""

    def setUp(self):
        self.base = support.make_base_dir(self)
        self.serve = ['/usr/bin/brz', 'serve', '--inet',
                      '--directory=' + self.base]

    def test_measures_both_sides(self):
        code, result, err = run_probe(['--runs', '2', '--cold'] + self.serve
                                      + ['--pooled'] + self.serve)
        self.assertEqual(code, 0, err)
        for side in ('cold', 'pooled'):
            self.assertEqual(len(result[side]['ms']), 2)
            self.assertEqual(result[side]['statuses'], ['code:0'] * 2)
            self.assertEqual(result[side]['failed'], 0)
            self.assertGreater(result[side]['median'], 0)
            self.assertEqual(result[side]['p90'], max(result[side]['ms']))
        self.assertEqual(result['runs'], 2)

    def test_a_command_that_never_answers_is_killed_and_counted(self):
        silent = [support.PYTHON, '-c', 'import time; time.sleep(60)']
        code, result, _ = run_probe(['--runs', '1', '--timeout-s', '0.5',
                                     '--cold'] + self.serve
                                    + ['--pooled'] + silent)
        self.assertEqual(code, 1)
        self.assertEqual(result['pooled']['failed'], 1)
        self.assertEqual(result['pooled']['statuses'], ['signal:9'])
        self.assertEqual(result['pooled']['median'], None)
        self.assertEqual(result['cold']['failed'], 0)

    def test_runs_as_the_given_user(self):
        if not support.is_root():
            self.skipTest('needs root to switch users')
        user = support.make_user(self, self.base)
        marker = os.path.join(self.base, 'who')
        os.chmod(self.base, 0o777)
        wrapped = ['/bin/sh', '-c', 'id -u > %s; pwd >> %s; exec "$@"'
                   % (marker, marker), 'sh'] + self.serve
        code, result, err = run_probe(['--runs', '1', '--as-user',
                                       user.name, '--cold'] + wrapped
                                      + ['--pooled'] + self.serve)
        self.assertEqual(code, 0, err)
        self.assertEqual(result['user'], user.name)
        with open(marker) as who:
            self.assertEqual(who.read().split(),
                             [str(user.uid), user.home])

    def test_bad_arguments_exit_2(self):
        for args in ([], ['--runs', '1', '--cold', 'x'],
                     ['--runs', '0', '--cold', 'x', '--pooled', 'y'],
                     ['--cold', 'x', '--pooled', 'y'],
                     ['--runs', '1', '--as-user', 'no-such-user-pf',
                      '--cold', 'x', '--pooled', 'y']):
            with self.subTest(args=args):
                code, result, err = run_probe(args)
                self.assertEqual(code, 2)
                self.assertIn('usage: probe.py', err)


if __name__ == '__main__':
    unittest.main()
