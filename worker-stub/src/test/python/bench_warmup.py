"""Measure what the warm-up buys: hello latency in a forked worker.

    cd worker-stub && /usr/bin/python3 src/test/python/bench_warmup.py [N]

Needs root. Starts two brz templates, one warmed and one started with
``--no-warm`` (Breezy and its plugins imported, nothing exercised), and
binds N workers of each (alternating, to cancel drift) to a temporary
user. For each worker it times one smart-protocol ``hello`` twice over:
from sending the request to reading the complete reply (``hello_ms``),
and from sending the binding to reading that reply (``bind_to_reply_ms``:
privilege drop, session set-up, FIFO opens and the hello). Prints one
JSON object with p50/p90/p99 per template. Not part of the test
suite (the file name does not start with ``test_``).
"""

import json
import math
import os
import sys
import time

import support

sys.path.insert(0, support.SOURCE_DIR)

DISCARD = 5
URL = 'bzr+ssh://prefork-bench/'


class _Cleanups:
    """Just enough of a TestCase for the support helpers."""

    def __init__(self):
        self.callbacks = []

    def addCleanup(self, function, *args):
        self.callbacks.append((function, args))

    def run(self):
        for function, args in reversed(self.callbacks):
            try:
                function(*args)
            except Exception as error:
                print('cleanup: %s' % error, file=sys.stderr)


def connect_and_hello(template, worker_id, user):
    """Fork, bind, open the FIFOs, say hello.

    Returns two times in ms: the hello alone (request sent to reply
    read), and bind to reply (binding sent, privilege drop, session
    set-up, FIFOs opened, hello answered).
    """
    from breezy.bzr.smart import client, medium
    template.fork(worker_id)
    binding = support.binding(user, ['bzr', 'serve', '--inet',
                                     '--directory=/'])
    bind_sent = time.perf_counter()
    event = template.bind(worker_id, binding)
    assert event == ['bound', worker_id], (event, template.log())
    session = support.Session(os.path.join(template.worker_dir, worker_id))
    smart = client._SmartClient(medium.SmartSimplePipesClientMedium(
        session.stdout, session.stdin, URL))
    hello_sent = time.perf_counter()
    reply = smart.call(b'hello')
    replied = time.perf_counter()
    assert reply == (b'ok', b'2'), reply
    session.communicate()
    assert template.expect('exited')[3] == 'code:0'
    return (replied - hello_sent) * 1000.0, (replied - bind_sent) * 1000.0


def percentile(ordered, fraction):
    """Nearest-rank percentile of a sorted list."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(times):
    """p50/p90/p99 of the runs after the first DISCARD."""
    kept = sorted(times[DISCARD:])
    return {name: round(percentile(kept, fraction), 3)
            for name, fraction in (('p50', 0.5), ('p90', 0.9),
                                   ('p99', 0.99))} | {'n': len(kept)}


def main(runs):
    """Run the comparison; print JSON."""
    from breezy import library_state, trace
    cleanups = _Cleanups()
    try:
        base = support.make_base_dir(cleanups)
        user = support.make_user(cleanups, base)
        for sub in ('a', 'b'):
            os.mkdir(os.path.join(base, sub), 0o755)
        templates = {
            'warmed': support.Template(cleanups, os.path.join(base, 'a'),
                                       service='brz'),
            'imported_only': support.Template(
                cleanups, os.path.join(base, 'b'), service='brz',
                extra_args=['--no-warm']),
        }
        ready_ms = {name: int(template.ready()[3])
                    for name, template in templates.items()}
        hello = {name: [] for name in templates}
        bind_to_reply = {name: [] for name in templates}
        with library_state.BzrLibraryState(ui=None, trace=trace.Config()):
            for number in range(runs + DISCARD):
                for name, template in templates.items():
                    alone, total = connect_and_hello(
                        template, 'w%d' % number, user)
                    hello[name].append(alone)
                    bind_to_reply[name].append(total)
        result = {name: {'hello_ms': summary(hello[name]),
                         'bind_to_reply_ms': summary(bind_to_reply[name]),
                         'ready_ms': ready_ms[name]}
                  for name in templates}
        print(json.dumps(result, sort_keys=True))
    finally:
        cleanups.run()


if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
