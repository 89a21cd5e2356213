package org.prefork.protocol;

import java.util.List;

/** A request a client sends on the control socket. */
public sealed interface Request {

    /** Offers one environment variable for the coming session. */
    record Env(String name, String value) implements Request {
    }

    /** Asks for a worker bound to {@code user}, running the service with {@code args}. */
    record Spawn(String user, List<String> args) implements Request {
        public Spawn {
            args = List.copyOf(args);
        }
    }

    record Status() implements Request {
    }

    record Shutdown() implements Request {
    }
}
