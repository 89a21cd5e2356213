package org.prefork.daemon;

import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;

import org.prefork.protocol.ExitStatus;

/**
 * One worker as the pool sees it. Workers are single-use: forking, then parked, then
 * bound to one user for one session, then exited.
 */
final class Worker {

    enum State { FORKING, PARKED, BINDING, BOUND, EXITED }

    final String id;
    final CompletableFuture<Void> bound = new CompletableFuture<>();
    final CompletableFuture<ExitStatus> exit = new CompletableFuture<>();

    // Guarded by the pool's lock.
    State state = State.FORKING;
    long pid;
    Path dir;
    String user = "-";
    long boundAtNanos;
    /** The pool asked the template to stop it; its SIGKILL is no news. */
    boolean stopRequested;

    Worker(String id) {
        this.id = id;
    }

    Path fifo(String name) {
        return dir.resolve(name);
    }

    @Override
    public String toString() {
        return id + " (pid:" + pid + ")";
    }
}
