package org.prefork.daemon;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutionException;

import jnr.unixsocket.Credentials;
import jnr.unixsocket.UnixSocketChannel;
import jnr.unixsocket.UnixSocketOptions;
import org.prefork.protocol.ControlCodec;
import org.prefork.protocol.ErrorCode;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.Limits;
import org.prefork.protocol.LineReader;
import org.prefork.protocol.ProtocolException;
import org.prefork.protocol.Reply;
import org.prefork.protocol.Request;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** One control connection: greeting, requests, and for a spawn, the worker's exit. */
final class ControlConnection implements Runnable {

    /** What the daemon does for a connection; the connection only speaks the protocol. */
    interface Handler {
        Reply.Status status();

        Worker handOut(Caller caller, Request.Spawn spawn, Map<String, String> env)
                throws Refusal, InterruptedException;

        void shutdown(Caller caller) throws Refusal;

        /** Counts an error reply, whatever its cause. */
        void refused(ErrorCode code);

        boolean envAllowed(String name);
    }

    private static final Logger log = LoggerFactory.getLogger(ControlConnection.class);

    /** A request line must arrive within this time; an idle caller does not hold a thread. */
    private static final int REQUEST_TIMEOUT_MS = 30_000;

    private final UnixSocketChannel channel;
    private final Handler handler;
    private final OutputStream out;
    private final Map<String, String> env = new LinkedHashMap<>();

    ControlConnection(UnixSocketChannel channel, Handler handler) {
        this.channel = channel;
        this.handler = handler;
        this.out = Channels.newOutputStream(channel);
    }

    @Override
    public void run() {
        try (channel) {
            Credentials peer = channel.getOption(UnixSocketOptions.SO_PEERCRED);
            Caller caller = new Caller(peer.getUid(), peer.getGid(), peer.getPid());
            channel.setOption(UnixSocketOptions.SO_RCVTIMEO, REQUEST_TIMEOUT_MS);
            send(new Reply.Greeting(Limits.PROTOCOL_VERSION));
            serve(caller, new LineReader(Channels.newInputStream(channel)));
        } catch (IOException e) {
            log.debug("control connection ended: {}", e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void serve(Caller caller, LineReader reader)
            throws IOException, InterruptedException {
        while (true) {
            Request request;
            try {
                byte[] line = reader.readLine();
                if (line == null) {
                    return;
                }
                request = ControlCodec.parseRequest(line);
            } catch (ProtocolException e) {
                log.warn("bad request from uid {} (pid:{}): {}", caller.uid(), caller.pid(),
                        e.getMessage());
                handler.refused(e.code());
                send(new Reply.Error(e.code(), e.getMessage()));
                continue;
            }
            if (!handle(caller, request)) {
                return;
            }
        }
    }

    /** Returns false when the connection is done. */
    private boolean handle(Caller caller, Request request)
            throws IOException, InterruptedException {
        try {
            if (request instanceof Request.Env e) {
                offerEnv(e);
                return true;
            }
            if (request instanceof Request.Status) {
                send(handler.status());
                return true;
            }
            if (request instanceof Request.Shutdown) {
                handler.shutdown(caller);
                send(new Reply.ShutdownOk());
                return false;
            }
            runSession(caller, (Request.Spawn) request);
            return false;
        } catch (Refusal r) {
            log.warn("refused uid {} (pid:{}): {}", caller.uid(), caller.pid(), r.getMessage());
            handler.refused(r.code());
            send(new Reply.Error(r.code(), r.getMessage()));
            return r.code().keepsConnection();
        }
    }

    private void offerEnv(Request.Env e) {
        // Unlisted names are dropped without a word, as sshd's AcceptEnv does.
        if (handler.envAllowed(e.name()) && env.size() < Limits.MAX_ARGS) {
            env.put(e.name(), e.value());
        }
    }

    private void runSession(Caller caller, Request.Spawn spawn)
            throws Refusal, IOException, InterruptedException {
        Worker worker = handler.handOut(caller, spawn, env);
        send(new Reply.Ok(worker.id, worker.pid, worker.fifo("stdin").toString(),
                worker.fifo("stdout").toString(), worker.fifo("stderr").toString()));
        try {
            ExitStatus status = worker.exit.get();
            send(new Reply.Exit(worker.id, status));
        } catch (ExecutionException e) {
            log.warn("{}: no exit status to report: {}", worker, e.getCause().getMessage());
        }
    }

    private void send(Reply reply) throws IOException {
        out.write(ControlCodec.encodeReply(reply).getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

}
