"""Log lines on file descriptor 2.

The template's stderr is preforkd's log of it: every line is
``LEVEL message``. Lines are written with a single ``os.write`` so that the
template and its workers, which share the pipe until a worker binds, do not
interleave inside a line. Callers pass messages that never contain
environment contents or binding values other than user names and ids.
"""

import os

DEBUG = 'DEBUG'
INFO = 'INFO'
WARNING = 'WARNING'
ERROR = 'ERROR'

MAX_MESSAGE_CHARS = 2000


def one_line(text, limit=MAX_MESSAGE_CHARS):
    """Return ``text`` as one printable line of at most ``limit`` chars.

    Control characters become ``?``, runs of white space become one space,
    and an empty result becomes ``-`` so that it still reads as a field.
    """
    printable = []
    for char in str(text):
        if char in '\t\r\n':
            printable.append(' ')
        elif char.isprintable():
            printable.append(char)
        else:
            printable.append('?')
    line = ' '.join(''.join(printable).split())
    if len(line) > limit:
        line = line[:limit - 3] + '...'
    return line or '-'


def write_all(fd, data):
    """Write all of ``data`` to ``fd``, retrying short writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def log(level, message):
    """Write one ``LEVEL message`` line to fd 2; never raises."""
    line = '%s %s\n' % (level, one_line(message))
    try:
        write_all(2, line.encode('utf-8', 'replace'))
    except OSError:
        # Nobody reads our log any more (the daemon is gone); carry on.
        pass


def template_log(level, message):
    """Log a line about the template itself."""
    log(level, 'template (pid:%d): %s' % (os.getpid(), message))


def worker_log(level, worker_id, user, message):
    """Log a line about a worker: its id, pid and bound user."""
    log(level, 'worker %s (pid:%d) user %s: %s'
        % (worker_id, os.getpid(), user or '-', message))
