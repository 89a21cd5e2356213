package org.prefork.protocol;

import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;

/**
 * Reads {@code \n}-terminated lines with a hard length limit.
 *
 * <p>An over-long line is discarded up to its terminator and reported as
 * {@link ErrorCode#LINE_TOO_LONG}; the next call reads the line after it. So a
 * peer that sends 10 MB without a newline costs us one buffer, never 10 MB.
 */
public final class LineReader {

    private final InputStream in;
    private final int maxLineBytes;
    private final byte[] buffer;
    private int bufferStart;
    private int bufferEnd;

    public LineReader(InputStream in) {
        this(in, Limits.MAX_LINE_BYTES);
    }

    public LineReader(InputStream in, int maxLineBytes) {
        this.in = in;
        this.maxLineBytes = maxLineBytes;
        this.buffer = new byte[Math.max(4096, maxLineBytes)];
    }

    /**
     * Returns the next line without its {@code \n}, or null at end of input. A final
     * fragment without {@code \n} is not a line and is dropped.
     */
    public byte[] readLine() throws IOException, ProtocolException {
        byte[] line = new byte[maxLineBytes];
        int length = 0;
        boolean tooLong = false;

        while (true) {
            if (bufferStart == bufferEnd && !fill()) {
                return null;
            }
            byte b = buffer[bufferStart++];
            if (b == '\n') {
                break;
            }
            // Room for the line plus its terminator, as the limit counts both.
            if (length + 1 < maxLineBytes) {
                line[length++] = b;
            } else {
                tooLong = true;
            }
        }

        if (tooLong) {
            throw new ProtocolException(ErrorCode.LINE_TOO_LONG,
                    "line is longer than " + maxLineBytes + " bytes");
        }
        return Arrays.copyOf(line, length);
    }

    private boolean fill() throws IOException {
        int n = in.read(buffer, 0, buffer.length);
        if (n <= 0) {
            return false;
        }
        bufferStart = 0;
        bufferEnd = n;
        return true;
    }
}
