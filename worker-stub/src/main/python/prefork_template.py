"""Entry point of the prefork template (run by preforkd).

    /usr/bin/python3 -E -s prefork_template.py --service brz|test \\
        --worker-dir DIR --warm-dir DIR [--startup-ms N] [--no-warm]

Commands arrive on stdin and events leave on stdout, as described in
protocol/PROTOCOL.md ("Template protocol"); stderr is the log.
``--no-warm`` skips the warm-up and exists only to measure its effect.
"""

import os

# Read before anything else: the template compares it with the parent it
# has once the parent-death signal is armed.
PPID_AT_START = os.getppid()

import sys  # noqa: E402

from prefork_worker import template  # noqa: E402

if __name__ == '__main__':
    sys.exit(template.main(sys.argv[1:], PPID_AT_START))
