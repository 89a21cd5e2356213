package org.prefork.daemon;

import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import jnr.unixsocket.UnixServerSocketChannel;
import jnr.unixsocket.UnixSocketAddress;
import jnr.unixsocket.UnixSocketChannel;
import org.prefork.protocol.ControlCodec;
import org.prefork.protocol.ErrorCode;
import org.prefork.protocol.Reply;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Listens on the control socket and gives each connection a thread of its own: a
 * connection lives as long as its session, waiting for the worker's exit.
 */
public final class ControlServer implements Closeable {

    private static final Logger log = LoggerFactory.getLogger(ControlServer.class);

    /** Concurrent connections, sessions included; one more gets an error and is closed. */
    private static final int MAX_CONNECTIONS = 1024;

    private final DaemonConfig config;
    private final ControlConnection.Handler handler;
    private final int socketGid;
    private final ThreadPoolExecutor connections;
    private UnixServerSocketChannel server;
    private volatile boolean closed;

    /** @param socketGid the socket's group, or -1 to keep the daemon's own */
    public ControlServer(DaemonConfig config, ControlConnection.Handler handler, int socketGid) {
        this.config = config;
        this.handler = handler;
        this.socketGid = socketGid;
        AtomicInteger number = new AtomicInteger();
        this.connections = new ThreadPoolExecutor(0, MAX_CONNECTIONS, 60, TimeUnit.SECONDS,
                new SynchronousQueue<>(), runnable -> {
                    Thread thread = new Thread(runnable, "control-" + number.incrementAndGet());
                    thread.setDaemon(true);
                    return thread;
                });
    }

    public void start() throws IOException {
        Path socket = config.socket();
        Files.createDirectories(socket.getParent());
        removeStaleSocket(socket);

        server = UnixServerSocketChannel.open();
        server.socket().bind(new UnixSocketAddress(socket.toFile()));
        if (socketGid >= 0) {
            Files.setAttribute(socket, "unix:gid", socketGid);
        }
        Files.setPosixFilePermissions(socket,
                PosixFilePermissions.fromString(modeString(config.socketMode())));
        checkSocketAccess(socket);
        log.info("listening on {} (mode {}, gid {})", socket,
                String.format("%04o", config.socketMode()),
                Files.getAttribute(socket, "unix:gid"));

        Thread acceptor = new Thread(this::acceptLoop, "control-accept");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    /** Reads back what the socket got: who may connect is a security setting. */
    private void checkSocketAccess(Path socket) throws IOException {
        int mode = (Integer) Files.getAttribute(socket, "unix:mode") & 0777;
        int gid = (Integer) Files.getAttribute(socket, "unix:gid");
        if (mode != config.socketMode() || (socketGid >= 0 && gid != socketGid)) {
            throw new IOException(String.format("control socket %s has mode %04o and gid %d,"
                    + " not the configured %04o and %d", socket, mode, gid,
                    config.socketMode(), socketGid));
        }
    }

    /** A socket file left by a daemon that died is removed; a live daemon's is not. */
    private static void removeStaleSocket(Path socket) throws IOException {
        if (!Files.exists(socket)) {
            return;
        }
        try (UnixSocketChannel probe =
                     UnixSocketChannel.open(new UnixSocketAddress(socket.toFile()))) {
            throw new IOException("another daemon is already listening on " + socket);
        } catch (IOException e) {
            if (e.getMessage() != null && e.getMessage().startsWith("another daemon")) {
                throw e;
            }
            Files.delete(socket);
        }
    }

    private void acceptLoop() {
        while (!closed) {
            try {
                UnixSocketChannel channel = server.accept();
                if (closed && channel != null) {
                    channel.close();
                } else if (channel != null) {
                    dispatch(channel);
                }
            } catch (IOException e) {
                if (!closed) {
                    log.error("accepting a control connection failed: {}", e.getMessage());
                }
            }
        }
    }

    private void dispatch(UnixSocketChannel channel) {
        try {
            connections.execute(new ControlConnection(channel, handler));
        } catch (java.util.concurrent.RejectedExecutionException e) {
            log.warn("refusing a connection: {} connections are open", MAX_CONNECTIONS);
            rejectBusy(channel);
        }
    }

    private static void rejectBusy(UnixSocketChannel channel) {
        try (channel) {
            OutputStream out = Channels.newOutputStream(channel);
            out.write(ControlCodec.encodeReply(new Reply.Error(ErrorCode.POOL_EXHAUSTED,
                    "too many open control connections")).getBytes(
                            java.nio.charset.StandardCharsets.UTF_8));
        } catch (IOException e) {
            log.debug("could not tell a rejected caller why: {}", e.getMessage());
        }
    }

    @Override
    public void close() throws IOException {
        closed = true;
        if (server != null) {
            wakeAcceptor();
            server.close();
        }
        connections.shutdownNow();
        Files.deleteIfExists(config.socket());
    }

    /**
     * Closing a socket does not wake a thread blocked in accept(2) on it, and its fd
     * number may be reused; one connection of our own lets the acceptor see it is closed.
     */
    private void wakeAcceptor() {
        try (UnixSocketChannel wake =
                     UnixSocketChannel.open(new UnixSocketAddress(config.socket().toFile()))) {
            log.debug("woke the acceptor");
        } catch (IOException e) {
            log.debug("acceptor already gone: {}", e.getMessage());
        }
    }

    static String modeString(int mode) {
        StringBuilder text = new StringBuilder();
        String letters = "rwxrwxrwx";
        for (int bit = 8; bit >= 0; bit--) {
            text.append((mode & (1 << bit)) != 0 ? letters.charAt(8 - bit) : '-');
        }
        return text.toString();
    }
}
