"""Template-protocol lines: framing, limits and parsing of commands.

Limits follow the "Common limits" of PROTOCOL.md. The JSON binding of a
``bind`` command is the rest of its line (it may hold spaces); every other
field is checked against the field rules.
"""

import re

MAX_LINE_BYTES = 8192
MAX_FIELD_BYTES = 1024
MAX_FIELDS_AFTER_VERB = 32

WORKER_ID = re.compile(r'w[0-9]{1,12}')
USER_NAME = re.compile(r'[a-z_][a-z0-9_-]{0,31}')

TOO_LONG = object()


class BadLine(ValueError):
    """A line that breaks the protocol; its text says why."""


class LineReader:
    """Split a byte stream into lines of at most ``limit`` bytes.

    A line longer than the limit yields ``TOO_LONG`` once, and the rest of
    it, up to and including the next newline, is discarded without being
    kept in memory.
    """

    def __init__(self, limit=MAX_LINE_BYTES):
        self._limit = limit
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data):
        """Yield each complete line (bytes, without ``\\n``) or TOO_LONG."""
        self._buffer += data
        while True:
            end = self._buffer.find(b'\n')
            if end < 0:
                yield from self._check_partial()
                return
            yield from self._take_line(end)

    def pending(self):
        """Return the number of bytes of an unfinished line."""
        return len(self._buffer)

    def _check_partial(self):
        if len(self._buffer) < self._limit:
            return
        # The line plus its newline cannot fit any more.
        self._wipe(len(self._buffer))
        if not self._discarding:
            self._discarding = True
            yield TOO_LONG

    def _take_line(self, end):
        line = bytes(self._buffer[:end])
        self._wipe(end + 1)
        if self._discarding:
            self._discarding = False
        elif end + 1 > self._limit:
            yield TOO_LONG
        else:
            yield line

    def _wipe(self, count):
        # Overwrite before dropping: bindings pass through this buffer and
        # every later worker inherits the template's memory.
        self._buffer[:count] = bytes(count)
        del self._buffer[:count]


def decode(raw):
    """Return ``raw`` as text, or raise BadLine for control bytes/UTF-8."""
    for byte in raw:
        if byte < 0x20 or byte == 0x7f:
            raise BadLine('control byte 0x%02x in line' % byte)
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        raise BadLine('line is not valid UTF-8') from None


def split_fields(text, max_splits=-1):
    """Split on single spaces; raise BadLine for empty or long fields."""
    fields = text.split(' ', max_splits)
    if len(fields) > MAX_FIELDS_AFTER_VERB + 1:
        raise BadLine('more than %d fields' % MAX_FIELDS_AFTER_VERB)
    for field in fields:
        if not field:
            raise BadLine('empty field')
    return fields


def check_field(field):
    """Raise BadLine when ``field`` is longer than the field limit."""
    if len(field.encode('utf-8')) > MAX_FIELD_BYTES:
        raise BadLine('field longer than %d bytes' % MAX_FIELD_BYTES)


def parse_command(raw):
    """Parse one command line into ``(verb, worker_id, json_text)``.

    ``json_text`` is None except for ``bind``. Raises BadLine.
    """
    text = decode(raw)
    verb = text.split(' ', 1)[0]
    if verb == 'bind':
        fields = split_fields(text, 2)
        if len(fields) != 3:
            raise BadLine('bind needs a worker id and a binding')
    elif verb in ('fork', 'stop'):
        fields = split_fields(text)
        if len(fields) != 2:
            raise BadLine('%s needs exactly one worker id' % verb)
    else:
        raise BadLine('unknown verb')
    check_field(fields[1])
    if not WORKER_ID.fullmatch(fields[1]):
        raise BadLine('bad worker id')
    return fields[0], fields[1], fields[2] if verb == 'bind' else None
