/*
 * exchange.c - two processes exchange frames over an ipn network, each
 * waiting for the other's frames with poll(2) on ipn_fd().
 *
 *     cc exchange.c $(pkg-config --cflags --libs ipn) -o exchange
 *     ./exchange /tmp/exchange-net 10
 *
 * The parent creates the network at PATH (it must not exist) and forks.
 * The child joins and answers every "ping N" frame with "pong N"; the
 * parent joins, waits until the child has joined (its fd becomes readable
 * when a port joins), sends COUNT pings and counts the pongs. Then both
 * leave and the parent removes the network.
 *
 * Frames are Ethernet frames (broadcast, EtherType 0x88b5, which IEEE
 * reserves for local experiments), so the network could as well have
 * virtual machines on it: they ignore them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ipn.h>

#define ETHER_HEADER 14

static void die(const char *what)
{
    fprintf(stderr, "exchange: %s: %s\n", what, ipn_last_error());
    exit(1);
}

/* A broadcast Ethernet frame from `mac_last_byte` carrying `text`. */
static size_t make_frame(unsigned char *frame, unsigned char mac_last_byte, const char *text)
{
    static const unsigned char header[ETHER_HEADER] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* destination: broadcast */
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, /* source: locally administered */
        0x88, 0xb5,                         /* local experimental EtherType */
    };
    memcpy(frame, header, ETHER_HEADER);
    frame[11] = mac_last_byte;
    size_t len = strlen(text);
    memcpy(frame + ETHER_HEADER, text, len);
    return ETHER_HEADER + len;
}

/* Waits up to timeout_ms for the port's fd to become readable: call it
 * after ipn_recv(..., 0) failed with EAGAIN (that empty receive is what
 * makes the next frame, or the next join or leave, wake the fd). Returns
 * 1 when readable, 0 after timeout_ms. */
static int wait_readable(struct ipn_port *port, int timeout_ms)
{
    struct pollfd p = {.fd = ipn_fd(port), .events = POLLIN};
    int ready;
    while ((ready = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    if (ready < 0) {
        perror("exchange: poll");
        exit(1);
    }
    return ready;
}

static int child(const char *path)
{
    struct ipn_port *port = ipn_join(path, "exchange: child");
    if (port == NULL)
        die("child: ipn_join");
    unsigned char buf[1514], frame[1514];
    int answered = 0, parent_joined = 0;
    for (;;) {
        ssize_t n = ipn_recv(port, buf, sizeof buf, 0);
        if (n < 0 && errno != EAGAIN)
            die("child: ipn_recv");
        if (n < 0) {
            /* Nothing waiting. Look at who is there after the empty
             * receive, and only then sleep: a join or leave that comes
             * later wakes the fd. */
            int writers = ipn_writers(port);
            if (writers > 1)
                parent_joined = 1;
            else if (parent_joined)
                break; /* the parent left: done */
            if (!wait_readable(port, 10000) && !parent_joined) {
                fprintf(stderr, "exchange: the parent did not join within 10 s\n");
                exit(1);
            }
            continue;
        }
        if (n < ETHER_HEADER + 5 || memcmp(buf + ETHER_HEADER, "ping ", 5) != 0)
            continue;
        parent_joined = 1;
        char text[64];
        snprintf(text, sizeof text, "pong %.*s", (int)(n - ETHER_HEADER - 5),
                 buf + ETHER_HEADER + 5);
        if (ipn_send(port, frame, make_frame(frame, 2, text)) < 0)
            die("child: ipn_send");
        answered++;
    }
    printf("child: answered %d pings\n", answered);
    ipn_close(port);
    return 0;
}

/* The parent's wait for "pong N": 1 when it came, 0 if it did not within
 * 5 s or the child left. */
static int wait_for_pong(struct ipn_port *port, int i)
{
    char want[32];
    snprintf(want, sizeof want, "pong %d", i);
    size_t want_len = ETHER_HEADER + strlen(want);
    unsigned char buf[1514];
    for (;;) {
        ssize_t n = ipn_recv(port, buf, sizeof buf, 0);
        if (n < 0 && errno != EAGAIN)
            die("ipn_recv");
        if (n < 0) {
            if (ipn_readers(port) < 2)
                return 0; /* the child is gone */
            if (!wait_readable(port, 5000))
                return 0; /* no answer within 5 s: lost */
            continue;
        }
        if ((size_t)n == want_len && memcmp(buf + ETHER_HEADER, want, strlen(want)) == 0)
            return 1;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PATH COUNT\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int count = atoi(argv[2]);

    struct ipn_config config;
    ipn_config_init(&config);
    config.ports = 4;
    if (ipn_create(path, &config) < 0)
        die("ipn_create");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0)
        return child(path);

    struct ipn_port *port = ipn_join(path, "exchange: parent");
    if (port == NULL)
        die("ipn_join");
    /* Frames reach only the ports joined when they are sent: wait for the
     * child. A join wakes the fd of a port that found nothing before. */
    unsigned char buf[1514], frame[1514];
    while (ipn_readers(port) < 2) {
        if (ipn_recv(port, buf, sizeof buf, 0) < 0 && errno != EAGAIN)
            die("ipn_recv");
        if (ipn_readers(port) < 2 && !wait_readable(port, 10000)) {
            fprintf(stderr, "exchange: the child did not join within 10 s\n");
            return 1;
        }
    }
    printf("parent: port %d, child joined (%d readers, MTU %d)\n", ipn_index(port),
           ipn_readers(port), ipn_mtu(port));

    int pongs = 0;
    for (int i = 1; i <= count; i++) {
        char text[32];
        snprintf(text, sizeof text, "ping %d", i);
        if (ipn_send(port, frame, make_frame(frame, 1, text)) < 0)
            die("ipn_send");
        pongs += wait_for_pong(port, i);
    }
    printf("parent: %d of %d pongs received\n", pongs, count);
    ipn_close(port);

    int status;
    waitpid(pid, &status, 0);
    if (ipn_remove(path, 0) < 0)
        die("ipn_remove");
    return pongs == count && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
