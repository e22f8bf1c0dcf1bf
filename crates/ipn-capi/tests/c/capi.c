/*
 * The C API as a C program sees it: every check compares a return value
 * and errno with what ipn.h promises. Built and run by tests/c_api.rs:
 *
 *     capi SCRATCH_DIR EXPECTED_VERSION
 *     capi --outsider NETWORK       (as a user who may not join NETWORK)
 *
 * SCRATCH_DIR is an existing empty directory the networks are made in.
 * Prints "ok NAME" per check and "all ok" at the end; exits 1 at the first
 * failure, saying what differed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ipn.h>

static const char *scratch;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "FAIL line %d: %s: ", __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, " (errno %d %s; ipn_last_error: %s)\n", errno, \
                    strerror(errno), ipn_last_error());                   \
            exit(1);                                                      \
        }                                                                 \
    } while (0)

/* A call that must fail with `failed` (-1, or NULL) and this errno. */
#define FAILS_AS(call, failed, err)                                           \
    do {                                                                      \
        errno = 0;                                                            \
        long long r_ = (long long)(intptr_t)(call);                           \
        int e_ = errno;                                                       \
        if (r_ != (long long)(intptr_t)(failed) || e_ != (err)) {             \
            fprintf(stderr, "FAIL line %d: %s gave %lld, errno %d (%s), "     \
                    "expected errno %d (%s); ipn_last_error: %s\n", __LINE__, \
                    #call, r_, e_, strerror(e_), err, strerror(err),          \
                    ipn_last_error());                                        \
            exit(1);                                                          \
        }                                                                     \
    } while (0)
#define FAILS_WITH(call, err) FAILS_AS(call, -1, err)
#define NULL_WITH(call, err) FAILS_AS(call, NULL, err)

static char *net(const char *name)
{
    static char paths[32][512];
    static int next;
    char *p = paths[next++ % 32];
    snprintf(p, 512, "%s/%s", scratch, name);
    return p;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

static void ok(const char *name)
{
    printf("ok %s\n", name);
    fflush(stdout);
}

static void missing_network(void)
{
    char *p = net("none/net");
    NULL_WITH(ipn_join(p, "x"), ENOENT);
    CHECK(strstr(ipn_last_error(), p) != NULL, "the message names the path: %s",
          ipn_last_error());
    NULL_WITH(ipn_join(net("never-made"), "x"), ENOENT);
    NULL_WITH(ipn_join(NULL, "x"), EFAULT);
    FAILS_WITH(ipn_create(NULL, NULL), EFAULT);
    FAILS_WITH(ipn_create(net("none/net"), NULL), ENOENT);
    FAILS_WITH(ipn_remove(net("never-made"), 0), ENOENT);
    ok("missing_network");
}

static void create_twice_is_eexist(void)
{
    char *p = net("twice");
    CHECK(ipn_create(p, NULL) == 0, "create %s", p);
    FAILS_WITH(ipn_create(p, NULL), EEXIST);
    CHECK(ipn_remove(p, 0) == 0, "remove");
    ok("create_twice_is_eexist");
}

static void bad_configs(void)
{
    struct ipn_config c;
    CHECK(ipn_config_init(&c) == 0, "init");
    CHECK(c.size == sizeof c && c.size == IPN_CONFIG_SIZE_V1, "size %u", c.size);
    CHECK(c.ports == 64 && c.mtu == 1514 && c.ring_frames == 0 && c.ring_bytes == 0 &&
              c.group == -1 && c.lossless == 0 && c.protocol == IPN_HUB &&
              c.mode == 0770 && c.reserved == 0,
          "defaults");
    FAILS_WITH(ipn_config_init_size(&c, 40), EINVAL);
    FAILS_WITH(ipn_config_init_size(NULL, sizeof c), EFAULT);
    /* Sizes no structure has: refused, nothing allocated nor written
     * (not an abort of the process on an allocation of 1 TiB, nor EIO). */
    c.mtu = 9000;
    FAILS_WITH(ipn_config_init_size(&c, (size_t)1 << 40), EINVAL);
    FAILS_WITH(ipn_config_init_size(&c, SIZE_MAX), EINVAL);
    FAILS_WITH(ipn_config_init_size(&c, IPN_CONFIG_SIZE_MAX + 1), EINVAL);
    CHECK(c.mtu == 9000 && c.size == sizeof c, "a refused size wrote nothing");
    {
        static union {
            struct ipn_config c;
            unsigned char bytes[IPN_CONFIG_SIZE_MAX];
        } largest;
        memset(largest.bytes, 0xff, sizeof largest.bytes);
        CHECK(ipn_config_init_size(&largest.c, sizeof largest) == 0,
              "IPN_CONFIG_SIZE_MAX bytes are accepted");
        CHECK(largest.c.size == IPN_CONFIG_SIZE_MAX && largest.bytes[sizeof largest - 1] == 0,
              "and zeroed to the end");
    }

    ipn_config_init(&c);
    c.mtu = 10;
    FAILS_WITH(ipn_create(net("small-mtu"), &c), EINVAL);
    ipn_config_init(&c);
    c.ring_frames = 3;
    FAILS_WITH(ipn_create(net("ring3"), &c), EINVAL);
    ipn_config_init(&c);
    c.protocol = 7;
    FAILS_WITH(ipn_create(net("proto7"), &c), EINVAL);
    ipn_config_init(&c);
    c.mode = 0070;
    FAILS_WITH(ipn_create(net("lockedout"), &c), EINVAL);
    ipn_config_init(&c);
    c.reserved = 1;
    FAILS_WITH(ipn_create(net("reserved"), &c), EINVAL);
    ipn_config_init(&c);
    c.size = 40;
    FAILS_WITH(ipn_create(net("size40"), &c), EINVAL);

    /* A program built with a newer ipn.h, whose structure is larger. */
    struct {
        struct ipn_config c;
        uint64_t newer_field;
    } big;
    CHECK(ipn_config_init_size(&big.c, sizeof big) == 0, "init big");
    CHECK(big.c.size == sizeof big && big.newer_field == 0, "big zeroed");
    big.newer_field = 1;
    FAILS_WITH(ipn_create(net("newer"), &big.c), E2BIG);
    big.newer_field = 0;
    CHECK(ipn_create(net("newer"), &big.c) == 0, "a newer, larger struct with zero extras");
    CHECK(ipn_remove(net("newer"), 0) == 0, "remove");
    ok("bad_configs");
}

static void frames_flow_and_fd_polls(void)
{
    char *p = net("flow");
    struct ipn_config c;
    ipn_config_init(&c);
    c.mtu = 2000;
    c.ports = 4;
    CHECK(ipn_create(p, &c) == 0, "create");
    struct ipn_port *a = ipn_join(p, "a");
    struct ipn_port *b = ipn_join(p, NULL);
    CHECK(a && b, "join");
    CHECK(ipn_mtu(a) == 2000, "mtu %d", ipn_mtu(a));
    CHECK(ipn_index(a) != ipn_index(b), "indexes");
    CHECK(ipn_readers(a) == 2 && ipn_writers(a) == 2, "membership %d %d", ipn_readers(a),
          ipn_writers(a));

    char frame[2000], buf[2000];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (char)i;
    /* Drain b's fd of the wake-up for a joining, so poll waits for the frame. */
    while (ipn_recv(b, buf, sizeof buf, 0) >= 0)
        ;
    CHECK(errno == EAGAIN, "empty receive: EAGAIN");
    struct pollfd pfd = {.fd = ipn_fd(b), .events = POLLIN};
    CHECK(pfd.fd >= 0, "fd");
    CHECK(poll(&pfd, 1, 0) == 0, "not readable with nothing waiting");
    CHECK(ipn_send(a, frame, sizeof frame) == (ssize_t)sizeof frame, "send a full-MTU frame");
    CHECK(poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN), "readable when a frame waits");
    ssize_t n = ipn_recv(b, buf, sizeof buf, 0);
    CHECK(n == (ssize_t)sizeof frame && memcmp(buf, frame, sizeof frame) == 0, "got %zd", n);
    FAILS_WITH(ipn_recv(b, buf, sizeof buf, 0), EAGAIN);
    CHECK(poll(&pfd, 1, 0) == 0, "not readable after the empty receive");
    FAILS_WITH(ipn_recv(a, buf, sizeof buf, 0), EAGAIN); /* never its own frame */

    /* Truncated to the buffer. */
    CHECK(ipn_send(a, frame, 100) == 100, "send 100");
    CHECK(ipn_recv(b, buf, 10, 1000) == 10 && memcmp(buf, frame, 10) == 0, "truncated");
    /* Blocking receive. */
    CHECK(ipn_send(b, "hello", 5) == 5, "send");
    CHECK(ipn_recv(a, buf, sizeof buf, -1) == 5 && memcmp(buf, "hello", 5) == 0, "recv -1");

    ipn_close(a);
    ipn_close(b);
    CHECK(ipn_remove(p, 0) == 0, "remove");
    ok("frames_flow_and_fd_polls");
}

static void send_errors(void)
{
    char *p = net("send-errors");
    struct ipn_config c;
    ipn_config_init(&c);
    c.mtu = 100;
    CHECK(ipn_create(p, &c) == 0, "create");
    struct ipn_port *a = ipn_join(p, "a");
    CHECK(a, "join");
    char frame[101] = {0};
    FAILS_WITH(ipn_send(a, frame, 101), EMSGSIZE);
    CHECK(strstr(ipn_last_error(), "101") && strstr(ipn_last_error(), "100"),
          "message gives both sizes: %s", ipn_last_error());
    CHECK(ipn_send(a, frame, 100) == 100, "exactly the MTU");
    CHECK(strstr(ipn_last_error(), "101"), "a success leaves the last error alone");
    FAILS_WITH(ipn_send(a, frame, 0), EINVAL);
    FAILS_WITH(ipn_send(a, NULL, 10), EFAULT);
    FAILS_WITH(ipn_send(NULL, frame, 10), EBADF);
    FAILS_WITH(ipn_send_timeout(a, frame, 10, -2), EINVAL);
    ipn_close(a);
    CHECK(ipn_remove(p, 0) == 0, "remove");
    ok("send_errors");
}

static void recv_errors_and_timeout(void)
{
    char *p = net("recv-errors");
    CHECK(ipn_create(p, NULL) == 0, "create");
    struct ipn_port *a = ipn_join(p, "a");
    CHECK(a, "join");
    char buf[64];
    double t0 = now_ms();
    FAILS_WITH(ipn_recv(a, buf, sizeof buf, 200), EAGAIN);
    double waited = now_ms() - t0;
    CHECK(waited >= 199, "waited %.1f ms for a 200 ms timeout", waited);
    FAILS_WITH(ipn_recv(a, buf, sizeof buf, 0), EAGAIN);
    FAILS_WITH(ipn_recv(a, buf, sizeof buf, -2), EINVAL);
    FAILS_WITH(ipn_recv(a, NULL, 10, 0), EFAULT);
    FAILS_WITH(ipn_recv(NULL, buf, sizeof buf, 0), EBADF);
    FAILS_WITH(ipn_fd(NULL), EBADF);
    FAILS_WITH(ipn_mtu(NULL), EBADF);
    FAILS_WITH(ipn_readers(NULL), EBADF);
    ipn_close(NULL);
    ipn_close(a);
    CHECK(ipn_remove(p, 0) == 0, "remove");
    ok("recv_errors_and_timeout");
}

static void join_flags(void)
{
    char *p = net("flags");
    NULL_WITH(ipn_join_ex(p, "x", 0, NULL), ENOENT);
    NULL_WITH(ipn_join_ex(p, "x", 0x100, NULL), EINVAL);
    NULL_WITH(ipn_join_ex(p, "x", IPN_JOIN_READ_ONLY | IPN_JOIN_WRITE_ONLY | IPN_JOIN_CREATE,
                           NULL),
               EINVAL);
    struct ipn_config c;
    ipn_config_init(&c);
    c.mtu = 3000;
    struct ipn_port *rw = ipn_join_ex(p, "rw", IPN_JOIN_CREATE, &c);
    CHECK(rw && ipn_mtu(rw) == 3000, "IPN_JOIN_CREATE made the network with the config");
    c.mtu = 5000; /* ignored: the network exists */
    struct ipn_port *ro = ipn_join_ex(p, "ro", IPN_JOIN_READ_ONLY | IPN_JOIN_CREATE, &c);
    struct ipn_port *wo = ipn_join_ex(p, "wo", IPN_JOIN_WRITE_ONLY, NULL);
    CHECK(ro && wo && ipn_mtu(ro) == 3000, "joined");
    CHECK(ipn_readers(rw) == 2 && ipn_writers(rw) == 2, "readers %d writers %d",
          ipn_readers(rw), ipn_writers(rw));
    char buf[64];
    FAILS_WITH(ipn_send(ro, "x", 1), EBADF);
    FAILS_WITH(ipn_recv(wo, buf, sizeof buf, 0), EBADF);
    CHECK(ipn_send(wo, "from wo", 7) == 7, "write-only sends");
    CHECK(ipn_recv(ro, buf, sizeof buf, 1000) == 7, "read-only receives");
    FAILS_WITH(ipn_remove(p, 0), EBUSY);
    FAILS_WITH(ipn_remove(p, 0x10), EINVAL);
    ipn_close(ro);
    ipn_close(wo);
    CHECK(ipn_readers(rw) == 1 && ipn_writers(rw) == 1, "after leaving");
    CHECK(ipn_remove(p, IPN_REMOVE_FORCE) == 0, "remove --force while joined");
    ipn_close(rw);
    ok("join_flags");
}

static void full_network_is_eusers(void)
{
    char *p = net("full");
    struct ipn_config c;
    ipn_config_init(&c);
    c.ports = 1;
    CHECK(ipn_create(p, &c) == 0, "create");
    struct ipn_port *a = ipn_join(p, "a");
    CHECK(a, "join");
    NULL_WITH(ipn_join(p, "b"), EUSERS);
    ipn_close(a);
    struct ipn_port *b = ipn_join(p, "b");
    CHECK(b, "the slot is free again");
    ipn_close(b);
    CHECK(ipn_remove(p, 0) == 0, "remove");
    ok("full_network_is_eusers");
}

static void lossless_send_without_room_is_eagain(void)
{
    char *p = net("lossless");
    struct ipn_config c;
    ipn_config_init(&c);
    c.lossless = 1;
    c.ring_frames = 4;
    CHECK(ipn_create(p, &c) == 0, "create");
    struct ipn_port *tx = ipn_join_ex(p, "tx", IPN_JOIN_WRITE_ONLY, NULL);
    struct ipn_port *rx = ipn_join_ex(p, "stuck", IPN_JOIN_READ_ONLY, NULL);
    CHECK(tx && rx, "join");
    char frame[60] = {0};
    int sent = 0;
    while (ipn_send_timeout(tx, frame, sizeof frame, 0) == sizeof frame)
        CHECK(++sent <= 4, "sent %d frames into a ring of 4", sent);
    CHECK(errno == EAGAIN && sent == 4, "EAGAIN after %d frames (errno %d)", sent, errno);
    double t0 = now_ms();
    FAILS_WITH(ipn_send_timeout(tx, frame, sizeof frame, 100), EAGAIN);
    CHECK(now_ms() - t0 >= 99, "waited %.1f ms", now_ms() - t0);
    char buf[64];
    CHECK(ipn_recv(rx, buf, sizeof buf, 0) == sizeof frame, "the reader makes room");
    CHECK(ipn_send_timeout(tx, frame, sizeof frame, 1000) == sizeof frame, "then it sends");
    ipn_close(rx);
    ipn_close(tx);
    CHECK(ipn_remove(p, 0) == 0, "remove");
    ok("lossless_send_without_room_is_eagain");
}

/* Run by a user the network's mode and group keep out. */
static int outsider(const char *path)
{
    NULL_WITH(ipn_join(path, "outsider"), EACCES);
    CHECK(strstr(ipn_last_error(), "permission denied") != NULL, "the message says why: %s",
          ipn_last_error());
    FAILS_WITH(ipn_remove(path, IPN_REMOVE_FORCE), EACCES);
    ok("outsider_gets_eacces");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--outsider") == 0)
        return outsider(argv[2]);
    if (argc != 3) {
        fprintf(stderr, "usage: %s SCRATCH_DIR EXPECTED_VERSION\n"
                        "       %s --outsider NETWORK\n", argv[0], argv[0]);
        return 2;
    }
    scratch = argv[1];
    CHECK(strcmp(ipn_version(), argv[2]) == 0, "version %s", ipn_version());
    CHECK(ipn_last_error() != NULL && ipn_last_error()[0] == '\0', "no error yet");
    missing_network();
    create_twice_is_eexist();
    bad_configs();
    frames_flow_and_fd_polls();
    send_errors();
    recv_errors_and_timeout();
    join_flags();
    full_network_is_eusers();
    lossless_send_without_room_is_eagain();
    printf("all ok\n");
    return 0;
}
