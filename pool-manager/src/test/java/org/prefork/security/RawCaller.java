package org.prefork.security;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.prefork.testing.Commands;
import org.prefork.testing.TestUsers;

/**
 * A control-protocol caller that runs as any test user and sends exactly the bytes it is
 * given, so the daemon sees that user's uid from the kernel. It is Python from the
 * system interpreter, in isolated mode, because the test JVM cannot change its uid.
 */
final class RawCaller {

    private static final String PYTHON = "/usr/bin/python3";

    /*
     * send: write stdin to the socket, end the writing side, print every reply byte.
     * hold N: open N connections, print "held N", keep them until stdin ends.
     * frontend USER: ask for USER's echo session, print the reply, wait for a line on
     *   stdin, open the FIFOs in protocol order, send one line, print what came back
     *   and the daemon's exit line.
     */
    private static final String SCRIPT = """
            import os, resource, socket, sys
            path, mode = sys.argv[1], sys.argv[2]
            def connect():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                return s
            def read_all(fd):
                data = b''
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        return data
                    data += chunk
            if mode == 'send':
                s = connect()
                s.sendall(sys.stdin.buffer.read())
                s.shutdown(socket.SHUT_WR)
                sys.stdout.buffer.write(read_all(s.fileno()))
            elif mode == 'hold':
                n = int(sys.argv[3])
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                held = [connect() for _ in range(n)]
                print('held', len(held), flush=True)
                sys.stdin.read()
            elif mode == 'frontend':
                s = connect()
                s.sendall(('spawn %s echo\\n' % sys.argv[3]).encode())
                replies = s.makefile('rb')
                replies.readline()
                ok = replies.readline().decode().strip()
                print(ok, flush=True)
                if not ok.startswith('ok '):
                    sys.exit(1)
                sys.stdin.readline()
                fifos = ok.split(' ')[3:]
                w = os.open(fifos[0], os.O_WRONLY)
                r = os.open(fifos[1], os.O_RDONLY)
                e = os.open(fifos[2], os.O_RDONLY)
                os.write(w, b'through the frontend\\n')
                os.close(w)
                print('echo', read_all(r).decode().strip(), flush=True)
                print(replies.readline().decode().strip(), flush=True)
            """;

    private RawCaller() {
    }

    /** Sends {@code request} as {@code user}; returns all the daemon replied, line by line. */
    static List<String> send(TestUsers.User user, Path socket, byte[] request)
            throws IOException, InterruptedException {
        Commands.Result result = Commands.run(AsUser.command(user,
                List.of(PYTHON, "-I", "-c", SCRIPT, socket.toString(), "send")),
                Path.of("/"), AsUser.MINIMAL_ENV, request);
        assertThat(result.status()).as("raw caller failed: %s", result.stderr()).isZero();
        return result.stdout().lines().toList();
    }

    static List<String> send(TestUsers.User user, Path socket, String request)
            throws IOException, InterruptedException {
        return send(user, socket, request.getBytes(StandardCharsets.UTF_8));
    }

    /** A process of {@code user} holding {@code count} idle connections until closed. */
    static Held hold(TestUsers.User user, Path socket, int count) throws IOException {
        Process process = AsUser.start(user,
                List.of(PYTHON, "-I", "-c", SCRIPT, socket.toString(), "hold",
                        Integer.toString(count)));
        Held held = new Held(process);
        assertThat(held.readLine()).as("connections opened").isEqualTo("held " + count);
        return held;
    }

    /** A frontend process of {@code user} that asked for {@code target}'s echo session. */
    static Held frontend(TestUsers.User user, Path socket, String target) throws IOException {
        return new Held(AsUser.start(user,
                List.of(PYTHON, "-I", "-c", SCRIPT, socket.toString(), "frontend", target)));
    }

    /** A running raw caller: its output lines, a way to poke it, and its end. */
    static final class Held implements AutoCloseable {

        private final Process process;
        private final BufferedReader out;

        Held(Process process) {
            this.process = process;
            this.out = new BufferedReader(new InputStreamReader(process.getInputStream(),
                    StandardCharsets.UTF_8));
        }

        String readLine() throws IOException {
            String line = out.readLine();
            return line != null ? line : "(end of output; stderr: "
                    + new String(process.getErrorStream().readAllBytes(),
                            StandardCharsets.UTF_8).strip() + ")";
        }

        void poke() throws IOException {
            OutputStream in = process.getOutputStream();
            in.write('\n');
            in.flush();
        }

        @Override
        public void close() throws InterruptedException {
            try {
                process.getOutputStream().close();
            } catch (IOException e) {
                // It ended already.
            }
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor();
            }
        }
    }
}
