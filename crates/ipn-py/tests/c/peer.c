/*
 * peer.c - the C side of test_interop.py: joins the network at PATH,
 * says "ready", then answers each of COUNT frames it receives with
 * "C got: " and the frame, and prints each frame it received.
 *
 *     cc peer.c -I crates/ipn-capi/include -L target/debug -lipn -o peer
 *     ./peer PATH COUNT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ipn.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: peer PATH COUNT\n");
        return 2;
    }
    struct ipn_port *port = ipn_join(argv[1], "C peer");
    if (!port) {
        fprintf(stderr, "peer: %s\n", ipn_last_error());
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    unsigned char frame[1600], answer[1700];
    for (int i = 0; i < atoi(argv[2]); i++) {
        ssize_t n = ipn_recv(port, frame, sizeof frame, 20000);
        if (n < 0) {
            fprintf(stderr, "peer: %s\n", ipn_last_error());
            return 1;
        }
        printf("%.*s\n", (int)n, (const char *)frame);
        fflush(stdout);
        memcpy(answer, "C got: ", 7);
        memcpy(answer + 7, frame, (size_t)n);
        if (ipn_send(port, answer, (size_t)n + 7) < 0) {
            fprintf(stderr, "peer: %s\n", ipn_last_error());
            return 1;
        }
    }
    ipn_close(port);
    return 0;
}
