"""Measure connection time: cold start against a pooled worker.

Usage::

    /usr/bin/python3 -E -s probe.py --runs N [--warm-up N] [--as-user USER]
        [--timeout-s S] --cold CMD [ARG...] --pooled CMD [ARG...]

Each run starts a command, speaks the smart protocol to it over its
stdin/stdout with Breezy's client medium, sends ``hello`` and stops the
clock when the complete reply has been read; then it closes the
command's stdin and waits for it to exit. Runs alternate cold, pooled,
cold, pooled... so that drift of the machine hits both sides alike.
Breezy is imported before any clock starts. ``--cold`` and ``--pooled``
take the rest of the line up to the other one, so a command cannot
itself contain the words ``--cold`` or ``--pooled``.

With ``--as-user`` the commands run as that user (its uid, primary group
and supplementary groups, HOME/USER/LOGNAME, cwd its home). A command
that has not answered within ``--timeout-s`` (default 30) is killed and
the run counts as failed. ``--warm-up N`` first makes N untimed runs on
each side.

Output: one JSON object on stdout::

    {"runs": N, "user": "...",
     "cold": {"ms": [...], "median": M, "p90": P, "failed": F,
              "statuses": ["code:0", ...]},
     "pooled": {...}}

``ms`` holds the times of successful runs only; ``statuses`` holds every
run's exit status as ``code:N`` or ``signal:N``. Exit code 0 when every
run answered ``hello``, 1 when some failed, 2 on bad arguments.
"""

import json
import math
import os
import pwd
import statistics
import subprocess
import sys
import threading
import time

# Run as a script, our own directory comes first on sys.path; its module
# names (log, template, ...) must not shadow anything Breezy imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path
               if os.path.abspath(entry or '.') != _HERE]

from breezy import library_state, trace  # noqa: E402
from breezy.bzr.smart import client as smart_client  # noqa: E402
from breezy.bzr.smart import medium as smart_medium  # noqa: E402

URL = 'bzr+ssh://prefork-probe/'
DEFAULT_TIMEOUT_S = 30.0
USAGE = ('usage: probe.py --runs N [--as-user USER] [--timeout-s S] '
         '--cold CMD... --pooled CMD...')


class UsageError(Exception):
    """The command line is not understood."""


def parse(argv):
    """Return the options as a dict, or raise UsageError."""
    commands = _split_commands(argv)
    options = {'runs': None, 'warm_up': 0, 'user': None,
               'timeout_s': DEFAULT_TIMEOUT_S}
    head = list(commands.pop('head'))
    while head:
        flag = head.pop(0)
        if not head:
            raise UsageError('%s needs a value' % flag)
        value = head.pop(0)
        if flag == '--runs':
            options['runs'] = _positive(flag, value, int)
        elif flag == '--warm-up':
            options['warm_up'] = _positive(flag, value, int)
        elif flag == '--as-user':
            options['user'] = value
        elif flag == '--timeout-s':
            options['timeout_s'] = _positive(flag, value, float)
        else:
            raise UsageError('unknown option %s' % flag)
    if options['runs'] is None:
        raise UsageError('--runs is required')
    options.update(commands)
    return options


def _split_commands(argv):
    marks = {name: argv.index(name) for name in ('--cold', '--pooled')
             if name in argv}
    if len(marks) != 2:
        raise UsageError('both --cold and --pooled are required')
    first, second = sorted(marks.values())
    parts = {'head': argv[:first], argv[first]: argv[first + 1:second],
             argv[second]: argv[second + 1:]}
    for name in ('--cold', '--pooled'):
        if not parts[name]:
            raise UsageError('%s needs a command' % name)
    return {'head': parts['head'], 'cold': parts['--cold'],
            'pooled': parts['--pooled']}


def _positive(flag, value, kind):
    try:
        number = kind(value)
    except ValueError:
        raise UsageError('%s must be a number' % flag) from None
    if number <= 0:
        raise UsageError('%s must be positive' % flag)
    return number


def become(user):
    """Turn this process into ``user`` for good, before any clock starts.

    Dropping once here rather than per command matters for the figures:
    ``subprocess`` cannot use vfork when asked to change the child's ids,
    and forking this process (Breezy loaded) costs milliseconds that
    belong to the probe, not to either side.
    """
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.setgroups(os.getgrouplist(user, entry.pw_gid))
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)
    os.chdir(entry.pw_dir if os.path.isdir(entry.pw_dir) else '/')


def measure_once(command, timeout_s):
    """Run ``command`` once; return (milliseconds or None, status)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
    watchdog = threading.Timer(timeout_s, process.kill)
    watchdog.start()
    elapsed_ms = None
    try:
        medium = smart_medium.SmartSimplePipesClientMedium(
            process.stdout, process.stdin, URL)
        reply = smart_client._SmartClient(medium).call(b'hello')
        if reply and reply[0] == b'ok':
            elapsed_ms = (time.perf_counter() - started) * 1000.0
    except Exception as error:
        print('probe: %s: %s' % (command[0], error), file=sys.stderr)
    finally:
        _close(process.stdin)
        returncode = process.wait()
        watchdog.cancel()
        _close(process.stdout)
    return elapsed_ms, _status(returncode)


def _close(stream):
    try:
        stream.close()
    except OSError:
        pass


def _status(returncode):
    if returncode < 0:
        return 'signal:%d' % -returncode
    return 'code:%d' % returncode


def summarise(times_ms, statuses):
    """Return the JSON-ready summary of one side."""
    ordered = sorted(times_ms)
    return {
        'ms': [round(value, 3) for value in times_ms],
        'median': round(statistics.median(ordered), 3) if ordered else None,
        'p90': round(_nearest_rank(ordered, 0.9), 3) if ordered else None,
        'failed': len(statuses) - len(times_ms),
        'statuses': statuses,
    }


def _nearest_rank(ordered, fraction):
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def run(options):
    """Alternate cold and pooled runs; return the result object."""
    become(options['user'])
    # Warm-up runs fill the page cache on the cold side and the daemon's
    # code paths on the pooled side; like any benchmark, we discard them.
    for _ in range(options['warm_up']):
        for side in ('cold', 'pooled'):
            measure_once(options[side], options['timeout_s'])
    sides = {'cold': ([], []), 'pooled': ([], [])}
    for _ in range(options['runs']):
        for side in ('cold', 'pooled'):
            elapsed_ms, status = measure_once(
                options[side], options['timeout_s'])
            times, statuses = sides[side]
            if elapsed_ms is not None:
                times.append(elapsed_ms)
            statuses.append(status)
    result = {'runs': options['runs'], 'user': options['user']}
    for side, (times, statuses) in sides.items():
        result[side] = summarise(times, statuses)
    return result


def main(argv):
    """Parse, measure, print JSON; return the exit code."""
    try:
        options = parse(argv)
        if options['user'] is not None:
            pwd.getpwnam(options['user'])
    except (UsageError, KeyError) as error:
        print('probe: %s\n%s' % (error, USAGE), file=sys.stderr)
        return 2
    state = library_state.BzrLibraryState(ui=None, trace=trace.Config())
    with state:
        result = run(options)
    print(json.dumps(result, sort_keys=True))
    failed = result['cold']['failed'] + result['pooled']['failed']
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
