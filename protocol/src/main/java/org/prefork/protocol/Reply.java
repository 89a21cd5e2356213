package org.prefork.protocol;

import java.util.Map;

/** A line the daemon sends on the control socket. */
public sealed interface Reply {

    record Greeting(int version) implements Reply {
    }

    /** A worker was bound for the caller; open its FIFOs in this order. */
    record Ok(String workerId, long pid, String stdinFifo, String stdoutFifo,
              String stderrFifo) implements Reply {
    }

    record Exit(String workerId, ExitStatus status) implements Reply {
    }

    record Status(Map<String, String> values) implements Reply {
        public Status {
            values = Map.copyOf(values);
        }
    }

    record ShutdownOk() implements Reply {
    }

    record Error(ErrorCode code, String message) implements Reply {
    }
}
