package org.prefork.daemon;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import org.prefork.protocol.ControlClient;
import org.prefork.protocol.ControlCodec;
import org.prefork.protocol.ExitStatus;
import org.prefork.protocol.ProtocolException;
import org.prefork.protocol.Reply;
import org.prefork.protocol.TemplateCodec;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Warms the daemon's own request path before the first real connection, as the
 * template warms Breezy. A fresh JVM interprets a method until it has run a few hundred
 * times; a hand-out touches enough code that, interpreted, it costs milliseconds, more
 * than the whole compiled path. Nothing here has a side effect: it speaks {@code status}
 * to our own socket and runs the codecs, the user lookup and the binding's JSON.
 */
final class JvmWarmUp {

    private static final Logger log = LoggerFactory.getLogger(JvmWarmUp.class);

    private static final int CONNECTIONS = 300;
    private static final int ITERATIONS = 3_000;

    private JvmWarmUp() {
    }

    static void run(DaemonConfig config, UserDatabase users, String someUser) {
        long startedNs = System.nanoTime();
        try {
            for (int i = 0; i < CONNECTIONS; i++) {
                try (ControlClient client = ControlClient.connect(config.socket())) {
                    client.status();
                }
            }
            UserAccount account = users.byName(someUser).orElseThrow();
            for (int i = 0; i < ITERATIONS; i++) {
                exerciseCodecs(config, account);
            }
        } catch (IOException | ProtocolException | RuntimeException | Refusal e) {
            // Only speed is at stake; the daemon serves correctly without it.
            log.warn("warming the request path failed: {}", e.toString());
        }
        log.info("request path warmed in {} ms", (System.nanoTime() - startedNs) / 1_000_000);
    }

    private static void exerciseCodecs(DaemonConfig config, UserAccount account)
            throws ProtocolException, Refusal {
        ControlCodec.parseRequest(bytes("spawn " + account.name()
                + " bzr serve --inet --directory=/ --allow-writes"));
        ServiceCommand.normalize(config.service(),
                List.of("bzr", "serve", "--inet", "--directory=/", "--allow-writes"));
        new Binding(account, new Caller(account.uid(), account.gid(), 1),
                List.of("serve", "--inet", "--directory=/"), Map.of("LANG", "C.UTF-8"), config)
                .toJson();
        for (String event : List.of("parked w1 1 /d", "bound w1", "exited w1 1 code:0")) {
            TemplateCodec.parseEvent(bytes(event));
        }
        ControlCodec.encodeReply(new Reply.Ok("w1", 1, "/d/stdin", "/d/stdout", "/d/stderr"));
        ControlCodec.encodeReply(new Reply.Exit("w1", ExitStatus.code(0)));
    }

    private static byte[] bytes(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }
}
