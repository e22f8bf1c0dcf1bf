/*
 * vdeclient: uses an ipn:// URL through libvdeplug exactly as a C program
 * would (vde_open, vde_send, vde_recv, vde_datafd, vde_close), and checks
 * the contract of the plugin. Built by tests/system.rs with
 *   cc -O2 -Wall -Werror -o vdeclient vdeclient.c -lvdeplug
 *
 * vdeclient check URL    two connections on URL: frames both ways with
 *                        their contents, datafd readiness, EMSGSIZE, and
 *                        the errors for bad URLs. Exit 0 iff all pass.
 *
 * vde_recv gives a frame (>= 14 bytes) or 1, "received but must be
 * dropped" in libvdeplug(3), when the readiness brought no frame; never 0.
 * vdeclient recv URL N   receive N frames (poll + vde_recv), print each
 *                        as a line of hex on stdout, then exit 0.
 * vdeclient send URL HEX send one frame given in hex, then exit 0.
 */
#include <errno.h>
#include <libvdeplug.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                   \
	do {                                                   \
		if (!(cond)) {                                     \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                  \
			fprintf(stderr, "\n");                         \
			failures++;                                    \
		}                                                  \
	} while (0)

/* 1 if fd becomes readable within ms milliseconds, 0 if not. */
static int readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n = poll(&p, 1, ms);
	if (n < 0) {
		perror("poll");
		exit(2);
	}
	return n > 0 && (p.revents & POLLIN);
}

static void make_frame(unsigned char *f, size_t len, unsigned char src, unsigned seq)
{
	memset(f, 0xff, 6);                   /* broadcast */
	unsigned char mac[6] = {0x02, 0, 0, 0, 0, src};
	memcpy(f + 6, mac, 6);
	f[12] = 0x88; f[13] = 0xb5;           /* local experimental ethertype */
	for (size_t i = 14; i < len; i++)
		f[i] = (unsigned char)(seq + i);
}

/* Receives one frame on conn, waiting up to ms; returns its length or -1. */
static ssize_t recv_within(VDECONN *conn, unsigned char *buf, size_t len, int ms)
{
	int fd = vde_datafd(conn);
	for (int tries = 0; tries < 3; tries++) {
		if (!readable(fd, ms))
			return -1;
		ssize_t n = vde_recv(conn, buf, len, 0);
		if (n >= 14)
			return n;
		CHECK(n == 1, "vde_recv returned %zd errno %d", n, errno);
	}
	return -1;
}

/* After the last frame: at most one spurious readiness (vde_recv 1), then
 * the datafd must stay quiet. */
static void expect_quiet(VDECONN *conn, const char *who)
{
	int fd = vde_datafd(conn);
	unsigned char buf[2048];
	int spurious = 0;
	while (readable(fd, 0)) {
		ssize_t n = vde_recv(conn, buf, sizeof buf, 0);
		CHECK(n == 1, "%s: unexpected vde_recv %zd (errno %d)", who, n, errno);
		if (++spurious > 1)
			break;
	}
	CHECK(spurious <= 1, "%s: datafd readable %d times with nothing waiting", who, spurious);
	CHECK(!readable(fd, 200), "%s: datafd readable with nothing waiting", who);
}

static int check(const char *url)
{
	unsigned char out[1514], in[4096];
	VDECONN *a = vde_open((char *)url, "vdeclient-a", NULL);
	if (!a) { fprintf(stderr, "FAIL vde_open %s: %s\n", url, strerror(errno)); return 1; }
	VDECONN *b = vde_open((char *)url, "vdeclient-b", NULL);
	if (!b) { fprintf(stderr, "FAIL second vde_open %s: %s\n", url, strerror(errno)); return 1; }
	CHECK(vde_datafd(a) >= 0 && vde_datafd(b) >= 0 && vde_datafd(a) != vde_datafd(b),
	      "datafds %d %d", vde_datafd(a), vde_datafd(b));

	/* Nothing sent yet: not readable; vde_recv does not block, returns 1. */
	CHECK(!readable(vde_datafd(b), 200), "b readable before anything was sent");
	CHECK(vde_recv(b, in, sizeof in, 0) == 1, "vde_recv on an empty port is not 1");
	expect_quiet(b, "b (fresh)");

	/* a -> b, contents intact; b's datafd is readable while it waits. */
	make_frame(out, 60, 0xa, 1);
	CHECK(vde_send(a, out, 60, 0) == 60, "vde_send a: %s", strerror(errno));
	CHECK(readable(vde_datafd(b), 1000), "b not readable with a frame waiting");
	CHECK(readable(vde_datafd(b), 0), "b readiness is not level-triggered");
	ssize_t n = vde_recv(b, in, sizeof in, 0);
	CHECK(n == 60 && memcmp(in, out, 60) == 0, "b got %zd bytes, not a's frame", n);
	/* a never receives its own frame (b's join may have rung a once). */
	expect_quiet(a, "a after sending");
	expect_quiet(b, "b after one frame");

	/* b -> a, full-size frame. */
	make_frame(out, 1514, 0xb, 2);
	CHECK(vde_send(b, out, 1514, 0) == 1514, "vde_send b: %s", strerror(errno));
	n = recv_within(a, in, sizeof in, 1000);
	CHECK(n == 1514 && memcmp(in, out, 1514) == 0, "a got %zd bytes, not b's frame", n);
	expect_quiet(a, "a after one frame");

	/* A burst: poll then vde_recv until it gives no frame (1), in order. */
	for (unsigned i = 0; i < 50; i++) {
		make_frame(out, 100, 0xa, i);
		CHECK(vde_send(a, out, 100, 0) == 100, "burst send %u", i);
	}
	unsigned got = 0;
	while (got < 50 && readable(vde_datafd(b), 1000)) {
		while ((n = vde_recv(b, in, sizeof in, 0)) >= 14) {
			make_frame(out, 100, 0xa, got);
			CHECK(n == 100 && memcmp(in, out, 100) == 0, "burst frame %u wrong", got);
			got++;
		}
		CHECK(n == 1, "vde_recv after the burst: %zd (%s)", n, strerror(errno));
	}
	CHECK(got == 50, "burst: received %u of 50", got);
	expect_quiet(b, "b after the burst");

	/* Oversize: an error, not a silent drop. */
	memset(out, 0, sizeof out);
	unsigned char big[1515];
	make_frame(big, sizeof big, 0xa, 3);
	errno = 0;
	CHECK(vde_send(a, big, sizeof big, 0) == -1 && errno == EMSGSIZE,
	      "oversize send: errno %d, want EMSGSIZE", errno);
	expect_quiet(b, "b after the oversize send");

	/* Small receive buffer: truncated, like recv(2) on a datagram. */
	make_frame(out, 200, 0xa, 4);
	vde_send(a, out, 200, 0);
	CHECK(readable(vde_datafd(b), 1000), "b not readable");
	n = vde_recv(b, in, 20, 0);
	CHECK(n == 20 && memcmp(in, out, 20) == 0, "truncated recv gave %zd", n);

	CHECK(vde_close(a) == 0, "vde_close a");
	CHECK(vde_close(b) == 0, "vde_close b");

	/* Bad URLs: NULL, errno set, message on stderr. */
	char bad[4096];
	const struct { const char *opts; int err; } cases[] = {
		{"[bogus=1]", EINVAL}, {"[mtu=abc]", EINVAL}, {"[hub/switch]", EINVAL},
		{"[m=5]", EINVAL}, {"[hu/sw]", EINVAL},
		{"[port=2]", EOPNOTSUPP}, {"[vlan=5000]", EINVAL}, {"[vlan=2/trunk=3]", EINVAL},
		{"[native=2]", EINVAL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(bad, sizeof bad, "%s%s", url, cases[i].opts);
		errno = 0;
		VDECONN *c = vde_open(bad, "vdeclient-bad", NULL);
		CHECK(c == NULL && errno == cases[i].err, "vde_open %s: %p errno %d, want NULL/%d",
		      bad, (void *)c, errno, cases[i].err);
	}
	if (failures == 0)
		printf("vdeclient check: all passed\n");
	return failures != 0;
}

static int recv_n(const char *url, int count)
{
	unsigned char buf[65536];
	VDECONN *c = vde_open((char *)url, "vdeclient-recv", NULL);
	if (!c) { fprintf(stderr, "vde_open %s: %s\n", url, strerror(errno)); return 1; }
	printf("ready\n");
	fflush(stdout);
	for (int got = 0; got < count;) {
		if (!readable(vde_datafd(c), 10000)) {
			fprintf(stderr, "vdeclient recv: timed out after %d frames\n", got);
			return 1;
		}
		ssize_t n;
		while (got < count && (n = vde_recv(c, buf, sizeof buf, 0)) >= 14) {
			for (ssize_t i = 0; i < n; i++)
				printf("%02x", buf[i]);
			printf("\n");
			got++;
		}
	}
	fflush(stdout);
	vde_close(c);
	return 0;
}

static int send_hex(const char *url, const char *hex)
{
	unsigned char frame[65536];
	size_t len = strlen(hex) / 2;
	for (size_t i = 0; i < len; i++)
		sscanf(hex + 2 * i, "%2hhx", &frame[i]);
	VDECONN *c = vde_open((char *)url, "vdeclient-send", NULL);
	if (!c) { fprintf(stderr, "vde_open %s: %s\n", url, strerror(errno)); return 1; }
	ssize_t n = vde_send(c, frame, len, 0);
	if (n != (ssize_t)len) { fprintf(stderr, "vde_send: %s\n", strerror(errno)); return 1; }
	vde_close(c);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "check") == 0)
		return check(argv[2]);
	if (argc == 4 && strcmp(argv[1], "recv") == 0)
		return recv_n(argv[2], atoi(argv[3]));
	if (argc == 4 && strcmp(argv[1], "send") == 0)
		return send_hex(argv[2], argv[3]);
	fprintf(stderr, "usage: vdeclient check URL | recv URL N | send URL HEX\n");
	return 2;
}
