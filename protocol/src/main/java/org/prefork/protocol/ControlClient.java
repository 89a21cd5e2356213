package org.prefork.protocol;

import java.io.BufferedInputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFileAttributes;
import java.util.List;
import java.util.Map;

import jnr.unixsocket.UnixSocketAddress;
import jnr.unixsocket.UnixSocketChannel;

/**
 * The Java side of the control protocol, for Java frontends (such as an embedded SSH
 * server) and tests. One client is one connection; a {@code spawn} uses it up.
 */
public final class ControlClient implements Closeable {

    private final UnixSocketChannel channel;
    private final OutputStream out;
    private final LineReader in;
    private boolean greeted;

    private ControlClient(UnixSocketChannel channel) {
        this.channel = channel;
        this.out = Channels.newOutputStream(channel);
        this.in = new LineReader(Channels.newInputStream(channel));
    }

    public static ControlClient connect(Path socket) throws IOException {
        return new ControlClient(UnixSocketChannel.open(new UnixSocketAddress(socket.toFile())));
    }

    /** Asks for a worker; on success the caller opens the FIFOs with {@link Session#open}. */
    public Reply spawn(String user, List<String> args, Map<String, String> env)
            throws IOException, ProtocolException {
        for (Map.Entry<String, String> e : env.entrySet()) {
            send(new Request.Env(e.getKey(), e.getValue()));
        }
        send(new Request.Spawn(user, args));
        return readReply();
    }

    public Reply status() throws IOException, ProtocolException {
        send(new Request.Status());
        return readReply();
    }

    public Reply shutdown() throws IOException, ProtocolException {
        send(new Request.Shutdown());
        return readReply();
    }

    /** Sends raw bytes as they are; for tests that speak the protocol badly on purpose. */
    public void sendRaw(byte[] bytes) throws IOException {
        out.write(bytes);
        out.flush();
    }

    /** Reads the next reply, skipping the greeting after checking its version. */
    public Reply readReply() throws IOException, ProtocolException {
        while (true) {
            byte[] line = in.readLine();
            if (line == null) {
                throw new IOException("daemon closed the control connection");
            }
            Reply reply = ControlCodec.parseReply(line);
            if (greeted || !(reply instanceof Reply.Greeting greeting)) {
                return reply;
            }
            if (greeting.version() != Limits.PROTOCOL_VERSION) {
                throw new ProtocolException(ErrorCode.BAD_REQUEST,
                        "daemon speaks protocol " + greeting.version());
            }
            greeted = true;
        }
    }

    private void send(Request request) throws IOException {
        out.write(ControlCodec.encodeRequest(request).getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }

    /** The three FIFO ends of a bound worker, opened in the protocol's order. */
    public record Session(OutputStream stdin, InputStream stdout, InputStream stderr)
            implements Closeable {

        public static Session open(Reply.Ok ok) throws IOException {
            // Same order as the worker, or both sides block in open(2) forever.
            OutputStream stdin = Files.newOutputStream(fifo(ok.stdinFifo()),
                    StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS);
            InputStream stdout = reading(fifo(ok.stdoutFifo()));
            InputStream stderr = reading(fifo(ok.stderrFifo()));
            return new Session(stdin, stdout, stderr);
        }

        /**
         * JDK 17's streams over a file channel seek (in available() and readAllBytes),
         * and a FIFO cannot; this one only ever reads.
         */
        private static InputStream reading(Path fifo) throws IOException {
            ReadableByteChannel channel = Files.newByteChannel(fifo, StandardOpenOption.READ,
                    LinkOption.NOFOLLOW_LINKS);
            return new BufferedInputStream(new InputStream() {
                @Override
                public int read() throws IOException {
                    byte[] one = new byte[1];
                    return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
                }

                @Override
                public int read(byte[] bytes, int offset, int length) throws IOException {
                    return length == 0 ? 0 : channel.read(ByteBuffer.wrap(bytes, offset, length));
                }

                @Override
                public void close() throws IOException {
                    channel.close();
                }
            });
        }

        /**
         * The bound user owns the worker's directory and could put a link or a file of
         * its choice where a FIFO is due; a caller running as root or as a frontend must
         * never follow it, create it, or truncate it.
         */
        private static Path fifo(String name) throws IOException {
            Path path = Path.of(name);
            PosixFileAttributes attributes = Files.readAttributes(path,
                    PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
            if (!attributes.isOther()) {
                throw new IOException(path + " is not a FIFO");
            }
            return path;
        }

        @Override
        public void close() throws IOException {
            stdin.close();
            stdout.close();
            stderr.close();
        }
    }
}
