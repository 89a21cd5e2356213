package org.prefork.protocol;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
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
            // Same order as the worker, or both sides block in open(2) forever. The
            // buffering is not only for speed: JDK 17's FileInputStream.readAllBytes
            // seeks, and a FIFO cannot seek.
            OutputStream stdin = new java.io.FileOutputStream(ok.stdinFifo());
            InputStream stdout = new java.io.BufferedInputStream(
                    new java.io.FileInputStream(ok.stdoutFifo()));
            InputStream stderr = new java.io.BufferedInputStream(
                    new java.io.FileInputStream(ok.stderrFifo()));
            return new Session(stdin, stdout, stderr);
        }

        @Override
        public void close() throws IOException {
            stdin.close();
            stdout.close();
            stderr.close();
        }
    }
}
