package org.prefork.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

class DemoCommandTest {

    private static String summary(double coldMs, double pooledMs) throws Exception {
        return DemoCommand.summary(new ObjectMapper().readTree(String.format(
                "{\"cold\": {\"median\": %s}, \"pooled\": {\"median\": %s}}", coldMs, pooledMs)));
    }

    @Test
    void theLastLineComparesTheMediansInTheIssuesForm() throws Exception {
        assertThat(summary(81.2, 1.4))
                .isEqualTo("connection time: cold 81.2 ms, pooled 1.4 ms, 58x faster");
    }

    @Test
    void ratiosBelowTenKeepADecimal() throws Exception {
        assertThat(summary(86.0, 9.0))
                .isEqualTo("connection time: cold 86.0 ms, pooled 9.0 ms, 9.6x faster");
    }
}
