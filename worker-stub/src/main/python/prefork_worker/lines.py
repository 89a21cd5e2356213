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

    Bindings pass through here, and every later worker inherits the
    template's memory. So the buffer is allocated once and never grows
    (a grown bytearray leaves its old copy behind in freed memory), each
    line is handed out as a view into it, and it is zeroed as soon as the
    consumer is done with the line.
    """

    def __init__(self, limit=MAX_LINE_BYTES):
        self._limit = limit
        self._buffer = bytearray(limit)
        self._view = memoryview(self._buffer)
        self._length = 0
        self._discarding = False

    def feed(self, chunk, count):
        """Yield each complete line of ``chunk[:count]``, or TOO_LONG.

        ``chunk`` is a bytearray; a line is a memoryview that is valid
        only until the consumer asks for the next one.
        """
        source = memoryview(chunk)
        start = 0
        while start < count:
            end = chunk.find(b'\n', start, count)
            stop = count if end < 0 else end
            yield from self._append(source[start:stop])
            if end < 0:
                return
            start = end + 1
            yield from self._finish_line()

    def pending(self):
        """Return the number of bytes of an unfinished line."""
        return self._length

    def _append(self, piece):
        if self._discarding:
            return
        if self._length + len(piece) + 1 > self._limit:
            # The line plus its newline cannot fit any more.
            self._wipe()
            self._discarding = True
            yield TOO_LONG
            return
        self._view[self._length:self._length + len(piece)] = piece
        self._length += len(piece)

    def _finish_line(self):
        if self._discarding:
            self._discarding = False
            return
        try:
            yield self._view[:self._length]
        finally:
            self._wipe()

    def _wipe(self):
        self._view[:self._length] = bytes(self._length)
        self._length = 0


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


def parse_command(line):
    """Parse one command line into ``(verb, worker_id, binding)``.

    ``line`` is bytes or a memoryview. ``binding`` is None except for
    ``bind``, where it is a view of the rest of the line, left undecoded:
    it is the worker's to validate, and decoding it here would leave a
    copy in the template's memory. Raises BadLine.
    """
    line = memoryview(line)
    if line[:5].tobytes() == b'bind ':
        return _parse_bind(line)
    text = decode(line.tobytes())
    verb = text.split(' ', 1)[0]
    if verb not in ('fork', 'stop'):
        raise BadLine('unknown verb')
    fields = split_fields(text)
    if len(fields) != 2:
        raise BadLine('%s needs exactly one worker id' % verb)
    return verb, _worker_id(fields[1]), None


def _parse_bind(line):
    # Only the worker id is read: the longest id and its space.
    space = -1
    for position in range(5, min(len(line), 5 + 13 + 1)):
        if line[position] == 0x20:
            space = position
            break
    if space < 0 or space + 1 >= len(line):
        raise BadLine('bind needs a worker id and a binding')
    worker_id = decode(line[5:space].tobytes())
    return 'bind', _worker_id(worker_id), line[space + 1:]


def _worker_id(field):
    check_field(field)
    if not WORKER_ID.fullmatch(field):
        raise BadLine('bad worker id')
    return field
