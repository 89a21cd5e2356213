/*
 * prefork-connect: the per-connection client of prefork.
 *
 * OpenSSH runs it as the ForceCommand of each bzr+ssh connection, as the
 * authenticated user. It asks preforkd over the control socket for a worker
 * bound to a user, relays its own stdin, stdout and stderr to the worker's
 * three FIFOs, and exits with the worker's exit status. The wire format is
 * PROTOCOL.md, section "Control protocol".
 *
 * It runs once per connection, so it is plain C on libc alone: it has to
 * start in about a millisecond, or it eats the time the pool saves.
 *
 * Exit codes: the worker's status (N, or 128 + N for signal N) once a
 * session ran; otherwise a code from sysexits.h:
 *   64  bad command line, or the daemon said bad-request, line-too-long
 *       or bad-command
 *   67  the calling uid has no name
 *   69  cannot connect, cannot open a FIFO, worker-failed, internal or an
 *       unknown error code
 *   70  the daemon closed the control connection early
 *   71  a system call failed that should not
 *   75  pool-exhausted, shutting-down, or no reply within --timeout-ms
 *   76  the daemon broke the protocol (version, malformed reply)
 *   77  refused, unknown-user
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* Limits from PROTOCOL.md, "Common limits". */
#define LINE_MAX_BYTES 8192         /* one line, including its \n */
#define FIELD_MAX_BYTES 1024
#define FIELDS_MAX 32               /* fields after the verb */
#define ARGS_MAX (FIELDS_MAX - 1)   /* spawn's first field is the user */
#define USER_MAX_CHARS 32
#define ENV_NAME_MAX_CHARS 64
#define WORKER_ID_MAX_DIGITS 12

#define DEFAULT_SOCKET "/run/prefork/control.sock"
#define DEFAULT_TIMEOUT_MS 30000
#define PROTOCOL_VERSION "1"

/*
 * How often a blocked FIFO open wakes up to look at the control socket, so
 * that a worker dying before it opened its side cannot hang us.
 */
#define OPEN_TICK_MS 100
/* After a FIFO open fails, how long the daemon may take to report the exit. */
#define EXIT_GRACE_MS 1000
/* Per direction; the same size as a Linux pipe, so one read fills it once. */
#define RELAY_BUF_BYTES 65536

struct options {
    const char *socket_path;
    const char *user;
    const char **env_names;
    int env_count;
    long timeout_ms;
    char **args;
    int arg_count;
};

/* The daemon's side of the control connection, read line by line. */
struct control {
    int fd;
    size_t len;
    char buf[LINE_MAX_BYTES];
    char line[LINE_MAX_BYTES];
};

/* What the daemon handed out in its `ok` reply. */
struct worker {
    char id[WORKER_ID_MAX_DIGITS + 2];
    char *fifo_in;
    char *fifo_out;
    char *fifo_err;
};

/* One direction of the session: bytes read from from_fd wait in buf for to_fd. */
struct relay {
    int from_fd;
    int to_fd;
    bool to_is_fifo;    /* own stdin -> worker: closing to_fd is the worker's EOF */
    bool from_eof;
    bool done;
    size_t head;
    size_t tail;
    char buf[RELAY_BUF_BYTES];
};

enum line_result { LINE_OK, LINE_EOF, LINE_TIMEOUT, LINE_TOO_LONG };

static int stdio_flags[3] = { -1, -1, -1 };
static struct control control;
static struct relay relays[3];

/* ---- messages ---------------------------------------------------------- */

static void restore_stdio(void);

static void say(const char *prefix, const char *fmt, va_list ap)
{
    char text[1024];
    int n = snprintf(text, sizeof text, "prefork: %s", prefix);
    int m = vsnprintf(text + n, sizeof text - (size_t)n - 1, fmt, ap);

    if (m < 0)
        m = 0;
    n = n + m < (int)sizeof text - 1 ? n + m : (int)sizeof text - 2;
    text[n++] = '\n';
    /* One write, so the line cannot interleave with relayed worker stderr. */
    if (write(STDERR_FILENO, text, (size_t)n) < 0)
        return;
}

__attribute__((format(printf, 1, 2)))
static void warn_msg(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    say("warning: ", fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 2, 3)))
static _Noreturn void fail(int status, const char *fmt, ...)
{
    va_list ap;

    /* Our stderr may still be non-blocking; a lost error message helps nobody. */
    restore_stdio();
    va_start(ap, fmt);
    say("", fmt, ap);
    va_end(ap);
    exit(status);
}

/* Copies text from the daemon or the command line for a message: short, no control bytes. */
static const char *printable(const char *s, char *out, size_t cap)
{
    size_t i = 0;

    for (; s[i] != '\0' && i + 4 < cap && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* ---- time -------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline_ms, as a poll() timeout; -1 waits forever. */
static int remaining_ms(long long deadline_ms)
{
    long long left;

    if (deadline_ms < 0)
        return -1;
    left = deadline_ms - now_ms();
    return left <= 0 ? 0 : (int)left;
}

/* ---- validation (PROTOCOL.md, "Common limits") ------------------------- */

/* Length of the UTF-8 sequence at s (at most len bytes), or 0 if it is not valid. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    size_t need;
    unsigned long cp;
    unsigned long min;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 1, cp = s[0] & 0x1f, min = 0x80;
    } else if ((s[0] & 0xf0) == 0xe0) {
        need = 2, cp = s[0] & 0x0f, min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 3, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len <= need)
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need + 1;
}

static bool utf8_valid(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;

    for (size_t i = 0, step; i < len; i += step) {
        step = utf8_sequence(s + i, len - i);
        if (step == 0)
            return false;
    }
    return true;
}

/*
 * Why s cannot be sent as one field, or NULL if it can. An env value is the rest
 * of its line, so it may hold spaces, but not only spaces.
 */
static const char *field_text_problem(const char *s, bool spaces_allowed)
{
    size_t len = strlen(s);

    if (len == 0 || (spaces_allowed && strspn(s, " ") == len))
        return "is empty";
    if (len > FIELD_MAX_BYTES)
        return "is longer than 1024 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' && !spaces_allowed)
            return "contains a space";
        if (c < 0x20 || c == 0x7f)
            return "contains a control character";
    }
    if (!utf8_valid(s, len))
        return "is not valid UTF-8";
    return NULL;
}

static const char *field_problem(const char *s)
{
    return field_text_problem(s, false);
}

/* ^[a-z_][a-z0-9_-]{0,31}$ */
static bool user_name_valid(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > USER_MAX_CHARS || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z')))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ^[A-Z_][A-Z0-9_]{0,63}$ */
static bool env_name_valid(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > ENV_NAME_MAX_CHARS || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* ^w[0-9]{1,12}$ */
static bool worker_id_valid(const char *s)
{
    size_t len = strlen(s);

    if (s[0] != 'w' || len < 2 || len > WORKER_ID_MAX_DIGITS + 1)
        return false;
    return strspn(s + 1, "0123456789") == len - 1;
}

/* Parses 1 to max_digits decimal digits and nothing else; -1 if s is not that. */
static long parse_digits(const char *s, size_t max_digits)
{
    size_t len = strlen(s);

    if (len == 0 || len > max_digits || strspn(s, "0123456789") != len)
        return -1;
    return strtol(s, NULL, 10);
}

/* ---- command line ------------------------------------------------------ */

static void usage(void)
{
    fputs("usage: prefork connect [--socket PATH] [--user USER] [--env NAME]...\n"
          "                       [--timeout-ms N] [--] [ARG...]\n"
          "Asks preforkd for a worker bound to USER and relays stdin, stdout and\n"
          "stderr to it. Without ARGs, the words of SSH_ORIGINAL_COMMAND are the ARGs.\n"
          "\n"
          "  --socket PATH    the daemon's control socket (default /run/prefork/control.sock)\n"
          "  --user USER      the user to bind (default: the caller; only root and\n"
          "                   trusted frontends may name another user)\n"
          "  --env NAME       pass NAME from this environment if the daemon allows it\n"
          "  --timeout-ms N   how long to wait for a worker (default 30000)\n"
          "\n"
          "Exit status: the worker's, or 128+N if signal N killed it; 64 bad arguments,\n"
          "69 daemon unreachable, 70 daemon gone before the exit status, 75 pool\n"
          "exhausted or daemon stopping, 76 protocol error, 77 refused.\n",
          stdout);
}

static long parse_timeout(const char *text)
{
    char *end;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 1 || value > 86400000)
        fail(EX_USAGE, "--timeout-ms must be a whole number from 1 to 86400000");
    return value;
}

static const char *shown_arg(const char *arg)
{
    static char shown[64];

    return printable(arg, shown, sizeof shown);
}

static void parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longs[] = {
        { "socket", required_argument, NULL, 's' },
        { "user", required_argument, NULL, 'u' },
        { "env", required_argument, NULL, 'e' },
        { "timeout-ms", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    opt->socket_path = DEFAULT_SOCKET;
    opt->timeout_ms = DEFAULT_TIMEOUT_MS;
    opt->env_names = calloc((size_t)argc, sizeof *opt->env_names);
    if (opt->env_names == NULL)
        fail(EX_OSERR, "out of memory");
    opterr = 0;
    /* "+": the first word that is not an option starts the ARGs, as in a shell. */
    while ((c = getopt_long(argc, argv, "+:h", longs, NULL)) != -1) {
        switch (c) {
        case 's': opt->socket_path = optarg; break;
        case 'u': opt->user = optarg; break;
        case 'e': opt->env_names[opt->env_count++] = optarg; break;
        case 't': opt->timeout_ms = parse_timeout(optarg); break;
        case 'h': usage(); exit(0);
        case ':': fail(EX_USAGE, "option %s needs a value", shown_arg(argv[optind - 1]));
        default: fail(EX_USAGE, "unknown option %s (see --help)", shown_arg(argv[optind - 1]));
        }
    }
    opt->args = argv + optind;
    opt->arg_count = argc - optind;
}

/*
 * sshd passes the client's command line as one string; the Breezy client
 * sends `bzr serve --inet --directory=/ --allow-writes`, which needs no
 * quoting, so splitting on blanks recovers its words.
 */
static void split_original_command(struct options *opt)
{
    const char *original = getenv("SSH_ORIGINAL_COMMAND");
    char *copy;
    char *save = NULL;

    if (original == NULL)
        return;
    copy = strdup(original);
    opt->args = calloc(ARGS_MAX + 1, sizeof *opt->args);
    if (copy == NULL || opt->args == NULL)
        fail(EX_OSERR, "out of memory");
    opt->arg_count = 0;
    for (char *word = strtok_r(copy, " \t", &save); word != NULL;
         word = strtok_r(NULL, " \t", &save)) {
        if (opt->arg_count == ARGS_MAX)
            fail(EX_USAGE, "SSH_ORIGINAL_COMMAND has more than %d words", ARGS_MAX);
        opt->args[opt->arg_count++] = word;
    }
}

static void resolve_user(struct options *opt)
{
    char shown[64];
    struct passwd *pw;

    if (opt->user == NULL) {
        pw = getpwuid(getuid());
        if (pw == NULL)
            fail(EX_NOUSER, "the calling uid %ld has no user name", (long)getuid());
        opt->user = strdup(pw->pw_name);
        if (opt->user == NULL)
            fail(EX_OSERR, "out of memory");
    }
    if (!user_name_valid(opt->user))
        fail(EX_USAGE, "user name '%s' does not match ^[a-z_][a-z0-9_-]{0,31}$",
             printable(opt->user, shown, sizeof shown));
}

/* Argument values may come from the environment: name their position, never their text. */
static size_t check_args(const struct options *opt)
{
    size_t line_len = strlen("spawn ") + strlen(opt->user) + 1;

    if (opt->arg_count > ARGS_MAX)
        fail(EX_USAGE, "%d arguments given, at most %d can be sent", opt->arg_count, ARGS_MAX);
    for (int i = 0; i < opt->arg_count; i++) {
        const char *problem = field_problem(opt->args[i]);
        if (problem != NULL)
            fail(EX_USAGE, "argument %d %s; it cannot be sent", i + 1, problem);
        line_len += 1 + strlen(opt->args[i]);
    }
    if (line_len > LINE_MAX_BYTES)
        fail(EX_USAGE, "the spawn request would be %zu bytes, over the limit of %d",
             line_len, LINE_MAX_BYTES);
    return line_len;
}

static void check_socket_path(const char *path)
{
    struct sockaddr_un addr;

    if (path[0] == '\0' || strlen(path) >= sizeof addr.sun_path)
        fail(EX_USAGE, "the socket path must have 1 to %zu bytes", sizeof addr.sun_path - 1);
}

/* ---- the request ------------------------------------------------------- */

static bool env_already_sent(const struct options *opt, int index)
{
    for (int i = 0; i < index; i++)
        if (strcmp(opt->env_names[i], opt->env_names[index]) == 0)
            return true;
    return false;
}

/* Appends `env NAME VALUE\n` if the value can be sent; values are secrets, so never shown. */
static size_t append_env(char *out, const struct options *opt, int index)
{
    const char *name = opt->env_names[index];
    const char *value = getenv(name);
    const char *problem;

    if (value == NULL || env_already_sent(opt, index))
        return 0;
    problem = field_text_problem(value, true);
    if (problem != NULL) {
        warn_msg("not sending %s: its value %s", name, problem);
        return 0;
    }
    return (size_t)sprintf(out, "env %s %s\n", name, value);
}

/* The whole request, env lines first, so that it goes out in one write. */
static char *build_request(const struct options *opt, size_t spawn_len, size_t *len)
{
    /* "env " + name + " " + value + "\n" */
    size_t env_max = 4 + ENV_NAME_MAX_CHARS + 1 + FIELD_MAX_BYTES + 1;
    char *out = malloc((size_t)opt->env_count * env_max + spawn_len + 1);
    size_t n = 0;
    char shown[64];

    if (out == NULL)
        fail(EX_OSERR, "out of memory");
    for (int i = 0; i < opt->env_count; i++) {
        if (!env_name_valid(opt->env_names[i]))
            fail(EX_USAGE, "--env name '%s' does not match ^[A-Z_][A-Z0-9_]{0,63}$",
                 printable(opt->env_names[i], shown, sizeof shown));
        n += append_env(out + n, opt, i);
    }
    n += (size_t)sprintf(out + n, "spawn %s", opt->user);
    for (int i = 0; i < opt->arg_count; i++)
        n += (size_t)sprintf(out + n, " %s", opt->args[i]);
    out[n++] = '\n';
    *len = n;
    return out;
}

/* ---- the control connection -------------------------------------------- */

static int connect_control(const char *path, long timeout_ms)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    /* For a Unix socket, the send timeout also bounds connect() on a full backlog. */
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        fail(EX_OSERR, "cannot create a socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    memcpy(addr.sun_path, path, strlen(path));
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            fail(EX_TEMPFAIL, "preforkd did not accept the connection within %ld ms",
                 timeout_ms);
        fail(EX_UNAVAILABLE, "cannot connect to %s: %s", path, strerror(errno));
    }
    return fd;
}

static void send_request(int fd, const char *request, size_t len, long timeout_ms)
{
    while (len > 0) {
        ssize_t n = send(fd, request, len, MSG_NOSIGNAL);
        if (n >= 0) {
            request += n, len -= (size_t)n;
        } else if (errno == EAGAIN) {
            fail(EX_TEMPFAIL, "preforkd did not take the request within %ld ms", timeout_ms);
        } else if (errno == EPIPE || errno == ECONNRESET) {
            /* The daemon hung up; its error reply, if any, is still there to read. */
            return;
        } else if (errno != EINTR) {
            fail(EX_OSERR, "cannot send the request: %s", strerror(errno));
        }
    }
}

/* Moves the next complete line from buf to line. */
static enum line_result take_line(struct control *c)
{
    char *nl = memchr(c->buf, '\n', c->len);
    size_t line_len;

    if (nl == NULL)
        return c->len == sizeof c->buf ? LINE_TOO_LONG : LINE_TIMEOUT;
    line_len = (size_t)(nl - c->buf);
    memcpy(c->line, c->buf, line_len);
    c->line[line_len] = '\0';
    c->len -= line_len + 1;
    memmove(c->buf, nl + 1, c->len);
    return LINE_OK;
}

/* One read from the socket; false at end of input (a reset counts as an end). */
static bool fill_control(struct control *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);

    if (n > 0) {
        c->len += (size_t)n;
        return true;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    return false;
}

/* The next line, waiting until deadline_ms (monotonic; -1 is no limit). */
static enum line_result next_line(struct control *c, long long deadline_ms)
{
    for (;;) {
        enum line_result r = take_line(c);
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int ready;

        if (r != LINE_TIMEOUT)
            return r;
        ready = poll(&p, 1, remaining_ms(deadline_ms));
        if (ready < 0 && errno != EINTR)
            fail(EX_OSERR, "poll: %s", strerror(errno));
        if (ready == 0)
            return LINE_TIMEOUT;
        if (ready > 0 && !fill_control(c))
            return LINE_EOF;
    }
}

/* A reply line must itself follow the rules for lines: no control bytes, valid UTF-8. */
static bool line_clean(const char *line)
{
    size_t len = strlen(line);

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return utf8_valid(line, len);
}

/* Splits on single spaces; -1 if a field is empty or there are more than max. */
static int split_fields(char *line, char **fields, int max)
{
    int n = 0;

    for (char *start = line;; start++) {
        char *space = strchr(start, ' ');
        if (n == max || *start == ' ' || *start == '\0')
            return -1;
        fields[n++] = start;
        if (space == NULL)
            return n;
        *space = '\0';
        start = space;
    }
}

static _Noreturn void fail_line(enum line_result r, const char *waiting_for, long timeout_ms)
{
    if (r == LINE_TIMEOUT)
        fail(EX_TEMPFAIL, "no %s from preforkd within %ld ms", waiting_for, timeout_ms);
    if (r == LINE_TOO_LONG)
        fail(EX_PROTOCOL, "preforkd sent a line over %d bytes", LINE_MAX_BYTES);
    fail(EX_SOFTWARE, "preforkd closed the connection before its %s", waiting_for);
}

static void expect_greeting(struct control *c, long long deadline_ms, long timeout_ms)
{
    enum line_result r = next_line(c, deadline_ms);
    const char *version = c->line + strlen("prefork ");
    char shown[64];

    if (r != LINE_OK)
        fail_line(r, "greeting", timeout_ms);
    if (strncmp(c->line, "prefork ", strlen("prefork ")) != 0 || parse_digits(version, 9) < 0)
        fail(EX_PROTOCOL, "preforkd sent no greeting but '%s'",
             printable(c->line, shown, sizeof shown));
    if (strcmp(version, PROTOCOL_VERSION) != 0)
        fail(EX_PROTOCOL, "preforkd speaks protocol version %s; this client speaks "
             PROTOCOL_VERSION, version);
}

/* error <code> <message...>: the daemon turned us down. */
static _Noreturn void fail_error_reply(char *line)
{
    static const struct { const char *code; int status; } exits[] = {
        { "refused", EX_NOPERM },         { "unknown-user", EX_NOPERM },
        { "pool-exhausted", EX_TEMPFAIL }, { "shutting-down", EX_TEMPFAIL },
        { "bad-request", EX_USAGE },      { "line-too-long", EX_USAGE },
        { "bad-command", EX_USAGE },
    };
    char *code = line + strlen("error ");
    char *message = strchr(code, ' ');
    int status = EX_UNAVAILABLE;

    if (message != NULL)
        *message++ = '\0';
    if (*code == '\0' || message == NULL || *message == '\0')
        fail(EX_PROTOCOL, "preforkd sent an error reply without a code and a message");
    for (size_t i = 0; i < sizeof exits / sizeof exits[0]; i++)
        if (strcmp(code, exits[i].code) == 0)
            status = exits[i].status;
    fail(status, "%s (%s)", message, code);
}

/* ok <worker-id> <pid> <stdin-fifo> <stdout-fifo> <stderr-fifo> */
static void parse_ok_reply(char *line, struct worker *w)
{
    char *f[7];
    int n = split_fields(line, f, 7);

    if (n != 6 || !worker_id_valid(f[1]) || parse_digits(f[2], 9) <= 0
            || f[3][0] != '/' || f[4][0] != '/' || f[5][0] != '/')
        fail(EX_PROTOCOL, "preforkd sent a malformed ok reply");
    strcpy(w->id, f[1]);
    w->fifo_in = strdup(f[3]);
    w->fifo_out = strdup(f[4]);
    w->fifo_err = strdup(f[5]);
    if (w->fifo_in == NULL || w->fifo_out == NULL || w->fifo_err == NULL)
        fail(EX_OSERR, "out of memory");
}

static void await_spawn_reply(struct control *c, long long deadline_ms, long timeout_ms,
                              struct worker *w)
{
    enum line_result r = next_line(c, deadline_ms);
    char shown[64];

    if (r != LINE_OK)
        fail_line(r, "reply to spawn", timeout_ms);
    if (!line_clean(c->line))
        fail(EX_PROTOCOL, "preforkd sent a reply with control bytes or bad UTF-8");
    if (strncmp(c->line, "error ", strlen("error ")) == 0)
        fail_error_reply(c->line);
    if (strncmp(c->line, "ok ", strlen("ok ")) != 0)
        fail(EX_PROTOCOL, "preforkd sent '%s' where ok or error was due",
             printable(c->line, shown, sizeof shown));
    parse_ok_reply(c->line, w);
}

/*
 * exit <worker-id> <status>, status code:N or signal:N; returns the status
 * as a shell would report it, or -1 if the line is not that.
 */
static int parse_exit_line(char *line, const struct worker *w)
{
    char *f[4];
    long n;

    if (!line_clean(line) || split_fields(line, f, 4) != 3 || strcmp(f[0], "exit") != 0
            || strcmp(f[1], w->id) != 0)
        return -1;
    if (strncmp(f[2], "code:", 5) == 0) {
        n = parse_digits(f[2] + 5, 3);
        return n <= 255 ? (int)n : -1;
    }
    if (strncmp(f[2], "signal:", 7) == 0) {
        n = parse_digits(f[2] + 7, 3);
        return n >= 1 && n <= 127 ? 128 + (int)n : -1;
    }
    return -1;
}

/* ---- opening the FIFOs ------------------------------------------------- */

static void on_tick(int sig)
{
    (void)sig;  /* only here to make a blocked open() return EINTR */
}

static void set_open_ticks(bool on)
{
    struct sigaction sa = { .sa_handler = on ? on_tick : SIG_IGN };
    struct itimerval every = { { 0, OPEN_TICK_MS * 1000 }, { 0, OPEN_TICK_MS * 1000 } };
    struct itimerval never = { { 0, 0 }, { 0, 0 } };

    /* No SA_RESTART: the point of the tick is to interrupt open(). */
    if (on)
        sigaction(SIGALRM, &sa, NULL);
    setitimer(ITIMER_REAL, on ? &every : &never, NULL);
    if (!on)
        sigaction(SIGALRM, &sa, NULL);  /* drops a tick that is already pending */
}

/*
 * Called while a FIFO is not open yet: if the daemon reported the worker's
 * exit (it died, or gave up waiting for us), end with its status.
 */
static void check_exit_before_session(struct control *c, const struct worker *w, int wait_ms)
{
    enum line_result r;
    int status;

    r = next_line(c, now_ms() + wait_ms);
    if (r == LINE_TIMEOUT)
        return;
    if (r != LINE_OK)
        fail_line(r, "worker's exit status", 0);
    status = parse_exit_line(c->line, w);
    if (status < 0)
        fail(EX_PROTOCOL, "preforkd sent a malformed line where exit was due");
    fail(status, "worker %s exited (status %d) before the session started", w->id, status);
}

/*
 * Opens one FIFO. A FIFO open blocks until the worker opens the other end,
 * which is how the two sides agree on the order. O_NOFOLLOW and the S_ISFIFO
 * check: the directory belongs to the bound user, who must not be able to
 * point us at another file we can write.
 */
static int open_fifo(const char *path, int flags, const char *role, struct control *c,
                     const struct worker *w)
{
    struct stat st;
    int fd;

    while ((fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        if (errno != EINTR) {
            int saved = errno;
            /* The directory goes away just before the daemon reports the exit. */
            set_open_ticks(false);
            check_exit_before_session(c, w, EXIT_GRACE_MS);
            fail(EX_UNAVAILABLE, "cannot open the worker's %s FIFO %s: %s", role, path,
                 strerror(saved));
        }
        check_exit_before_session(c, w, 0);
    }
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))
        fail(EX_PROTOCOL, "the worker's %s %s is not a FIFO", role, path);
    /* Non-blocking from now on: the relay must never wait on one direction. */
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        fail(EX_OSERR, "fcntl: %s", strerror(errno));
    return fd;
}

/* The worker opens stdin, stdout, stderr in this order; any other order deadlocks. */
static void open_fifos(struct control *c, const struct worker *w, int fds[3])
{
    set_open_ticks(true);
    fds[0] = open_fifo(w->fifo_in, O_WRONLY, "stdin", c, w);
    fds[1] = open_fifo(w->fifo_out, O_RDONLY, "stdout", c, w);
    fds[2] = open_fifo(w->fifo_err, O_RDONLY, "stderr", c, w);
    set_open_ticks(false);
}

/* ---- our own stdio ----------------------------------------------------- */

/*
 * If fd 0, 1 or 2 is closed, the next open() or socket() would take its
 * number and we would relay the session into the control socket.
 */
static void ensure_stdio_open(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        if (open("/dev/null", O_RDWR) != fd)
            _exit(EX_OSERR);
    }
}

static void restore_stdio(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (stdio_flags[fd] >= 0)
            fcntl(fd, F_SETFL, stdio_flags[fd]);
}

static void on_fatal_signal(int sig)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };

    restore_stdio();
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

/*
 * O_NONBLOCK is a flag of the open file description, which our parent
 * (sshd, or a shell and its terminal) shares: put it back however we end.
 */
static void set_stdio_nonblocking(void)
{
    static const int fatal[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM };
    struct sigaction sa = { .sa_handler = on_fatal_signal };

    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaction(fatal[i], &sa, NULL);
    atexit(restore_stdio);
    for (int fd = 0; fd < 3; fd++) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0)
            continue;
        stdio_flags[fd] = flags;
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }
}

/* ---- the relay --------------------------------------------------------- */

static void relay_init(struct relay *r, int from_fd, int to_fd, bool to_is_fifo)
{
    r->from_fd = from_fd;
    r->to_fd = to_fd;
    r->to_is_fifo = to_is_fifo;
    r->from_eof = false;
    r->done = false;
    r->head = r->tail = 0;
}

/*
 * Input drained: close our FIFO end. For stdin that is the worker's EOF;
 * for stdout and stderr it makes the worker's next write fail with EPIPE
 * rather than block on a FIFO nobody reads.
 */
static void relay_finish(struct relay *r)
{
    int fifo_fd = r->to_is_fifo ? r->to_fd : r->from_fd;

    if (fifo_fd >= 0)
        close(fifo_fd);
    r->from_fd = r->to_fd = -1;
    r->done = true;
}

/* The receiving side is gone: drop what is buffered and read no more. */
static void relay_drop(struct relay *r)
{
    r->head = r->tail = 0;
    r->from_eof = true;
    relay_finish(r);
}

static void relay_read(struct relay *r)
{
    ssize_t n = read(r->from_fd, r->buf + r->tail, sizeof r->buf - r->tail);

    if (n > 0)
        r->tail += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        r->from_eof = true;
    if (r->from_eof && r->head == r->tail)
        relay_finish(r);
}

static void relay_write(struct relay *r)
{
    ssize_t n = write(r->to_fd, r->buf + r->head, r->tail - r->head);

    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        relay_drop(r);
        return;
    }
    if (n > 0)
        r->head += (size_t)n;
    if (r->head == r->tail)
        r->head = r->tail = 0;
    if (r->from_eof && r->head == r->tail)
        relay_finish(r);
}

/* The session loop's poll set: each entry knows which relay it serves, if any. */
struct watch {
    struct pollfd fds[7];
    struct relay *owner[7];
    int count;
};

static void watch_add(struct watch *w, int fd, short events, struct relay *owner)
{
    w->fds[w->count] = (struct pollfd){ .fd = fd, .events = events };
    w->owner[w->count++] = owner;
}

static void watch_relays(struct watch *w)
{
    w->count = 0;
    for (int i = 0; i < 3; i++) {
        struct relay *r = &relays[i];
        if (r->done)
            continue;
        /* Bounded buffers: read only while there is room, write only what is held. */
        if (!r->from_eof && r->tail < sizeof r->buf)
            watch_add(w, r->from_fd, POLLIN, r);
        if (r->head < r->tail)
            watch_add(w, r->to_fd, POLLOUT, r);
    }
}

/*
 * Reads what the daemon sent during the session: at most its exit line,
 * whose status goes to *status (-1 until then). Returns whether the
 * connection is still open.
 */
static bool serve_control(struct control *c, const struct worker *w, int *status)
{
    bool open = fill_control(c);
    enum line_result r;

    while ((r = take_line(c)) == LINE_OK) {
        if (*status >= 0 || (*status = parse_exit_line(c->line, w)) < 0)
            fail(EX_PROTOCOL, "preforkd sent a malformed line where exit was due");
    }
    if (r == LINE_TOO_LONG)
        fail_line(r, "", 0);
    return open;
}

/* Relays until both output FIFOs ended and the exit line came; returns its status. */
static int relay_session(struct control *c, const struct worker *w, const int fifo[3])
{
    bool control_open = true;
    int status = -1;
    struct watch watch;

    relay_init(&relays[0], STDIN_FILENO, fifo[0], true);
    relay_init(&relays[1], fifo[1], STDOUT_FILENO, false);
    relay_init(&relays[2], fifo[2], STDERR_FILENO, false);
    /*
     * A daemon that dies takes its control connection with it, but not the session:
     * the worker is the user's now. Relay on until its output ends, then say why no
     * exit status came.
     */
    while (!(relays[1].done && relays[2].done && (status >= 0 || !control_open))) {
        watch_relays(&watch);
        if (control_open)
            watch_add(&watch, c->fd, POLLIN, NULL);
        if (poll(watch.fds, (nfds_t)watch.count, -1) < 0) {
            if (errno == EINTR)
                continue;
            fail(EX_OSERR, "poll: %s", strerror(errno));
        }
        for (int i = 0; i < watch.count; i++) {
            struct relay *r = watch.owner[i];
            if (watch.fds[i].revents == 0)
                continue;
            if (r == NULL)
                control_open = serve_control(c, w, &status);
            else if (!r->done && watch.fds[i].events == POLLIN)
                relay_read(r);
            else if (!r->done)
                relay_write(r);
        }
    }
    if (status < 0)
        fail(EX_SOFTWARE, "preforkd closed the control connection before the worker's "
             "exit status");
    return status;
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct options opt = { 0 };
    struct worker worker = { 0 };
    size_t spawn_len;
    size_t request_len;
    char *request;
    long long deadline_ms;
    int fifo[3];

    ensure_stdio_open();
    signal(SIGPIPE, SIG_IGN);  /* a vanished reader is an EPIPE we handle, not our death */

    /* validate everything before connecting */
    parse_options(argc, argv, &opt);
    if (opt.arg_count == 0)
        split_original_command(&opt);
    resolve_user(&opt);
    spawn_len = check_args(&opt);
    check_socket_path(opt.socket_path);
    request = build_request(&opt, spawn_len, &request_len);

    /* ask for a worker; only this part is bounded by --timeout-ms */
    deadline_ms = now_ms() + opt.timeout_ms;
    control.fd = connect_control(opt.socket_path, opt.timeout_ms);
    send_request(control.fd, request, request_len, opt.timeout_ms);
    expect_greeting(&control, deadline_ms, opt.timeout_ms);
    await_spawn_reply(&control, deadline_ms, opt.timeout_ms, &worker);

    /* the session: as long as the worker runs */
    open_fifos(&control, &worker, fifo);
    set_stdio_nonblocking();
    return relay_session(&control, &worker, fifo);
}
