package org.prefork.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;

import org.junit.jupiter.api.Test;
import org.prefork.protocol.ErrorCode;

class ServiceCommandTest {

    private static void assertBad(String service, List<String> args, String message) {
        assertThatThrownBy(() -> ServiceCommand.normalize(service, args))
                .isInstanceOf(Refusal.class).hasMessage(message)
                .extracting(e -> ((Refusal) e).code()).isEqualTo(ErrorCode.BAD_COMMAND);
    }

    @Test
    void breezyClientsCommandIsPutInOneForm() throws Exception {
        assertThat(ServiceCommand.normalize("brz",
                List.of("bzr", "serve", "--inet", "--directory=/", "--allow-writes")))
                .containsExactly("serve", "--inet", "--directory=/", "--allow-writes");
        assertThat(ServiceCommand.normalize("brz", List.of("brz", "serve", "--inet")))
                .containsExactly("serve", "--inet", "--directory=/");
    }

    @Test
    void anythingButAnInetSmartServerIsRefused() {
        assertBad("brz", List.of("bash", "-i"), "this host only serves Breezy smart-server"
                + " sessions (bzr+ssh: 'brz serve --inet'), got 'bash -i'");
        assertBad("brz", List.of(), "this host only serves Breezy smart-server sessions"
                + " (bzr+ssh: 'brz serve --inet'), got ''");
        assertBad("brz", List.of("serve", "--directory=/"),
                "'brz serve' needs --inet: sessions run over the SSH channel");
        assertBad("brz", List.of("serve", "--inet", "--port=4155"), "'brz serve' option"
                + " '--port=4155' is not allowed here; allowed: --inet, --directory=PATH,"
                + " --allow-writes");
    }

    @Test
    void theServedDirectoryIsAbsoluteAndNeverClimbs() {
        assertBad("brz", List.of("serve", "--inet", "--directory=srv"),
                "--directory must be an absolute path without '..', got 'srv'");
        assertBad("brz", List.of("serve", "--inet", "--directory=/srv/../etc"),
                "--directory must be an absolute path without '..', got '/srv/../etc'");
    }

    @Test
    void theTestServiceNeedsACommand() throws Exception {
        assertThat(ServiceCommand.normalize("test", List.of("exit", "3")))
                .containsExactly("exit", "3");
        assertBad("test", List.of(), "the test service needs a command: echo, exit N,"
                + " kill SIG, stderr TEXT, sleep MS, whoami, read PATH or signal PID SIG");
    }
}
