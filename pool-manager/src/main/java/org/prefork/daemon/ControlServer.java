package org.prefork.daemon;

import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntPredicate;

import jnr.unixsocket.UnixServerSocketChannel;
import jnr.unixsocket.UnixSocketAddress;
import jnr.unixsocket.UnixSocketChannel;
import jnr.unixsocket.UnixSocketOptions;
import org.prefork.protocol.ControlCodec;
import org.prefork.protocol.ErrorCode;
import org.prefork.protocol.Limits;
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

    private volatile DaemonConfig config;
    private final ControlConnection.Handler handler;
    private final int socketGid;
    private final IntPredicate unlimited;
    private final Map<Integer, Integer> openByUid = new ConcurrentHashMap<>();
    private final ThreadPoolExecutor connections;
    private UnixServerSocketChannel server;
    private volatile boolean closed;

    /**
     * @param socketGid the socket's group, or -1 to keep the daemon's own
     * @param unlimited the uids without a cap on open connections
     */
    public ControlServer(DaemonConfig config, ControlConnection.Handler handler, int socketGid,
            IntPredicate unlimited) {
        this.config = config;
        this.handler = handler;
        this.socketGid = socketGid;
        this.unlimited = unlimited;
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

    /** Throws when a live daemon answers on {@code socket}. */
    static void refuseIfAnotherDaemonListens(Path socket) throws IOException {
        if (!Files.exists(socket)) {
            return;
        }
        if (connectsTo(socket)) {
            throw new IOException("another daemon is already listening on " + socket);
        }
    }

    /** A socket file left by a daemon that died is removed; a live daemon's is not. */
    private static void removeStaleSocket(Path socket) throws IOException {
        refuseIfAnotherDaemonListens(socket);
        Files.deleteIfExists(socket);
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
        int uid;
        try {
            uid = channel.getOption(UnixSocketOptions.SO_PEERCRED).getUid();
        } catch (IOException e) {
            log.debug("peer vanished before it was identified: {}", e.getMessage());
            closeQuietly(channel);
            return;
        }
        boolean capped = !unlimited.test(uid);
        if (capped && !admit(uid)) {
            log.warn("refusing a connection from uid {}: it has {} open", uid,
                    config.maxConnectionsPerUid());
            rejectBusy(channel, "too many open control connections for uid " + uid
                    + " (limit " + config.maxConnectionsPerUid() + ")");
            return;
        }
        try {
            connections.execute(() -> {
                try {
                    new ControlConnection(channel, handler).run();
                } finally {
                    release(uid, capped);
                }
            });
        } catch (RejectedExecutionException e) {
            release(uid, capped);
            log.warn("refusing a connection: {} connections are open", MAX_CONNECTIONS);
            rejectBusy(channel, "too many open control connections");
        }
    }

    /**
     * One user's idle connections must not lock everybody else out, so each uid has a
     * cap; root and the trusted frontends carry every user's sessions and have none.
     */
    private boolean admit(int uid) {
        int open = openByUid.merge(uid, 1, Integer::sum);
        if (open > config.maxConnectionsPerUid()) {
            release(uid, true);
            return false;
        }
        return true;
    }

    /**
     * Whether a connection counted is decided once, when it opens: a reload that makes a
     * uid trusted (or not) while its connections are open must not skew the count.
     */
    private void release(int uid, boolean counted) {
        if (counted) {
            openByUid.computeIfPresent(uid, (key, open) -> open > 1 ? open - 1 : null);
        }
    }

    /** A refused caller still gets the greeting first, as the protocol promises. */
    private static void rejectBusy(UnixSocketChannel channel, String why) {
        try (channel) {
            OutputStream out = Channels.newOutputStream(channel);
            String lines = ControlCodec.encodeReply(new Reply.Greeting(Limits.PROTOCOL_VERSION))
                    + ControlCodec.encodeReply(new Reply.Error(ErrorCode.POOL_EXHAUSTED, why));
            out.write(lines.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            log.debug("could not tell a rejected caller why: {}", e.getMessage());
        }
    }

    private static void closeQuietly(UnixSocketChannel channel) {
        try {
            channel.close();
        } catch (IOException e) {
            log.debug("closing a connection failed: {}", e.getMessage());
        }
    }

    /** Applies a reloaded configuration (the socket itself never changes on reload). */
    void reconfigure(DaemonConfig next) {
        config = next;
    }

    /** Stops accepting, ends every open connection, and removes the socket we made. */
    @Override
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        if (server != null) {
            wakeAcceptor();
            server.close();
            Files.deleteIfExists(config.socket());
        }
        connections.shutdownNow();
    }

    /**
     * Closing a socket does not wake a thread blocked in accept(2) on it, and its fd
     * number may be reused; one connection of our own lets the acceptor see it is closed.
     */
    private void wakeAcceptor() {
        if (!connectsTo(config.socket())) {
            log.debug("acceptor already gone");
        }
    }

    /** Connects and hangs up at once; true when something listens on {@code socket}. */
    private static boolean connectsTo(Path socket) {
        try {
            UnixSocketChannel.open(new UnixSocketAddress(socket.toFile())).close();
            return true;
        } catch (IOException e) {
            return false;
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
