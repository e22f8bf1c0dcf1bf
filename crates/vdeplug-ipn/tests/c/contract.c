/*
 * contract: libvdeplug clients that take libvdeplug(3) literally, so that
 * the plugin is checked against the contract and not against what ipn's
 * own clients happen to tolerate. Built by tests/contract.rs with
 *   cc -O2 -Wall -Werror -pthread -o contract contract.c -lvdeplug
 *
 * libvdeplug(3): "vde_recv returns the length of the packet received. It
 * should never be less then 14 bytes (the length of an ethernet header).
 * It returns -1 in case of error, it may return 1 to notify that a packet
 * has been received but it must be dropped."
 *
 * contract recv URL COUNT
 *     A receiver like QEMU's net/vde.c: poll the datafd, then one vde_recv
 *     per readiness. 0 is not in the contract: like UML (-ENOTCONN) this
 *     client takes it for a closed connection, prints "closed" and exits
 *     3. 1 is a packet dropped: skipped. Frames from the sender (source
 *     SENDER_MAC) that are broadcast must carry the broadcast numbers 0,
 *     1, 2... in order (lossless network); other frames are counted only.
 *     Exits 0 after COUNT broadcast frames; 4 on an error or when nothing
 *     arrives for 10 s; 5 on a frame out of order.
 * contract send URL COUNT [TARGET_MAC]
 *     Sends COUNT 60-byte frames with blocking vde_send, pausing 0.5 ms
 *     every 16 frames (so that the stream lasts a while). Without
 *     TARGET_MAC all are broadcast. With it (aa:bb:cc:dd:ee:ff), it first
 *     receives until a frame from TARGET_MAC arrives (a switch learns
 *     where the target is), then sends every odd frame to the target
 *     alone: frame i is broadcast number i / 2 when i is even.
 * contract blocked-send URL     (URL: a lossless network)
 *     One thread's blocking vde_send waits for room; another thread's
 *     vde_recv on the same connection must not wait for it. Connection A
 *     fills the room of connection B, which does not read (vde_send with
 *     MSG_DONTWAIT until EAGAIN); B sends RECVS frames to A; a thread
 *     blocks in vde_send(A). Meanwhile the main thread receives B's
 *     frames on A: each vde_recv must return within 100 ms. Then B reads
 *     everything A sent, which makes room: the blocked vde_send returns
 *     and its frame reaches B. Exits 0 if all holds; 3 if a vde_recv
 *     waited behind the send (more than 1 s); 6 on any other failure.
 * contract dead-reader URL      (URL: a lossless network)
 *     A child process joins and never reads; A fills its room, then
 *     blocks in vde_send, and the child is killed (SIGKILL) 300 ms
 *     later: the send must return within 5 s (a dead reader is not
 *     waited for). Exits 0 if so, 6 if not.
 *
 * Frames: destination, source, ethertype 0x88b5, then the frame's number
 * and its broadcast number (0xffffffff for unicast), both 32-bit
 * little-endian, then padding to 60 bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libvdeplug.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ETH_HDRLEN 14
#define FRAME_LEN 60
#define NOT_BROADCAST 0xffffffffu

static const unsigned char SENDER_MAC[6] = {0x02, 0, 0, 0, 0, 0x5e};
static const unsigned char BROADCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static VDECONN *open_or_die(const char *url, const char *descr)
{
	VDECONN *conn = vde_open((char *)url, (char *)descr, NULL);
	if (!conn) {
		fprintf(stderr, "contract: vde_open %s: %s\n", url, strerror(errno));
		exit(4);
	}
	return conn;
}

static uint32_t get32(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

static int recv_count(const char *url, uint32_t count)
{
	static unsigned char buf[VDE_ETHBUFSIZE];
	VDECONN *conn = open_or_die(url, "contract-recv");
	struct pollfd p = {.fd = vde_datafd(conn), .events = POLLIN};
	uint32_t broadcast = 0, unicast = 0, others = 0, dropped = 0;
	printf("ready\n");
	fflush(stdout);
	while (broadcast < count) {
		int ready = poll(&p, 1, 10000);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			printf("timeout after %u broadcast frames\n", broadcast);
			return 4;
		}
		ssize_t n = vde_recv(conn, buf, sizeof buf, 0);
		if (n == 0) {
			printf("closed: vde_recv returned 0 after %u broadcast frames\n", broadcast);
			return 3;
		}
		if (n < 0) {
			printf("vde_recv: %s after %u broadcast frames\n", strerror(errno), broadcast);
			return 4;
		}
		if (n == 1) {
			dropped++;
			continue;
		}
		if (n < ETH_HDRLEN) {
			printf("vde_recv returned %zd, less than an Ethernet header\n", n);
			return 5;
		}
		if (n < FRAME_LEN || memcmp(buf + 6, SENDER_MAC, 6) != 0) {
			others++;
			continue;
		}
		if (memcmp(buf, BROADCAST, 6) != 0) {
			unicast++;
			continue;
		}
		uint32_t number = get32(buf + 18);
		if (number != broadcast) {
			printf("broadcast frame %u arrived when %u was due\n", number, broadcast);
			return 5;
		}
		broadcast++;
	}
	printf("received %u broadcast frames, %u unicast, %u from others, %u dropped (1)\n",
	       broadcast, unicast, others, dropped);
	vde_close(conn);
	return 0;
}

static int parse_mac(const char *text, unsigned char mac[6])
{
	return sscanf(text, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
	              &mac[4], &mac[5]) == 6;
}

/* Receives until a frame from mac arrives (a switch port learns from the
 * frames it reads). */
static void learn(VDECONN *conn, const unsigned char mac[6])
{
	static unsigned char buf[VDE_ETHBUFSIZE];
	struct pollfd p = {.fd = vde_datafd(conn), .events = POLLIN};
	for (;;) {
		if (poll(&p, 1, 10000) <= 0) {
			fprintf(stderr, "contract send: no frame from the target within 10 s\n");
			exit(4);
		}
		ssize_t n = vde_recv(conn, buf, sizeof buf, 0);
		if (n >= ETH_HDRLEN && memcmp(buf + 6, mac, 6) == 0)
			return;
	}
}

static int send_count(const char *url, uint32_t count, const char *target)
{
	unsigned char frame[FRAME_LEN] = {0}, to[6];
	VDECONN *conn = open_or_die(url, "contract-send");
	if (target) {
		if (!parse_mac(target, to)) {
			fprintf(stderr, "contract send: bad MAC %s\n", target);
			return 2;
		}
		learn(conn, to);
	}
	memcpy(frame + 6, SENDER_MAC, 6);
	frame[12] = 0x88; frame[13] = 0xb5;
	for (uint32_t i = 0; i < count; i++) {
		int unicast = target && i % 2 == 1;
		memcpy(frame, unicast ? to : BROADCAST, 6);
		put32(frame + 14, i);
		put32(frame + 18, unicast ? NOT_BROADCAST : (target ? i / 2 : i));
		ssize_t n = vde_send(conn, frame, sizeof frame, 0);
		if (n != sizeof frame) {
			fprintf(stderr, "contract send: frame %u: %zd (%s)\n", i, n, strerror(errno));
			return 4;
		}
		if (i % 16 == 15)
			usleep(500);
	}
	printf("sent %u\n", count);
	vde_close(conn);
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define FAIL(...)                                           \
	do {                                                    \
		printf("FAIL line %d: ", __LINE__);                 \
		printf(__VA_ARGS__);                                \
		printf("\n");                                       \
		fflush(stdout);                                     \
		_exit(6);                                           \
	} while (0)

static void make_frame(unsigned char *f, const unsigned char src[6], uint32_t number)
{
	memset(f, 0, FRAME_LEN);
	memcpy(f, BROADCAST, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88; f[13] = 0xb5;
	put32(f + 14, number);
}

/* Fills conn's peers' room with MSG_DONTWAIT sends; returns how many. */
static uint32_t fill(VDECONN *conn, const unsigned char src[6])
{
	unsigned char frame[FRAME_LEN];
	for (uint32_t sent = 0; sent < 1000000; sent++) {
		make_frame(frame, src, sent);
		if (vde_send(conn, frame, sizeof frame, MSG_DONTWAIT) != sizeof frame) {
			if (errno != EAGAIN)
				FAIL("vde_send MSG_DONTWAIT: %s, want EAGAIN", strerror(errno));
			if (sent == 0)
				FAIL("no room at all");
			return sent;
		}
	}
	FAIL("a lossless network never ran out of room");
}

struct blocked {
	VDECONN *conn;
	uint32_t number;
	ssize_t result;
	int error;
	atomic_int done;
};

static void *blocking_send(void *arg)
{
	struct blocked *b = arg;
	unsigned char frame[FRAME_LEN];
	make_frame(frame, SENDER_MAC, b->number);
	b->result = vde_send(b->conn, frame, sizeof frame, 0);
	b->error = errno;
	atomic_store(&b->done, 1);
	return NULL;
}

struct timed_recv {
	VDECONN *conn;
	unsigned char buf[VDE_ETHBUFSIZE];
	ssize_t result;
	double seconds;
};

static void *recv_once(void *arg)
{
	struct timed_recv *r = arg;
	double start = now();
	r->result = vde_recv(r->conn, r->buf, sizeof r->buf, 0);
	r->seconds = now() - start;
	return NULL;
}

/* One vde_recv in a thread of its own; if it has not returned after 1 s,
 * it waits behind something: exit 3. */
static void timed_recv(struct timed_recv *r)
{
	pthread_t thread;
	if (pthread_create(&thread, NULL, recv_once, r) != 0)
		FAIL("pthread_create");
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 1;
	if (pthread_timedjoin_np(thread, NULL, &deadline) != 0) {
		printf("vde_recv waited over 1 s behind the blocked vde_send\n");
		fflush(stdout);
		_exit(3);
	}
}

#define RECVS 5

static int blocked_send(const char *url)
{
	static const unsigned char B_MAC[6] = {0x02, 0, 0, 0, 0, 0xb0};
	alarm(30); /* whatever happens, no hang */
	VDECONN *a = open_or_die(url, "contract-a");
	VDECONN *b = open_or_die(url, "contract-b");
	/* The fds first, as a program (QEMU) does when it sets up. */
	struct pollfd p = {.fd = vde_datafd(a), .events = POLLIN};
	struct pollfd pb = {.fd = vde_datafd(b), .events = POLLIN};
	uint32_t filled = fill(a, SENDER_MAC);
	unsigned char frame[FRAME_LEN];
	for (uint32_t i = 0; i < RECVS; i++) {
		make_frame(frame, B_MAC, i);
		if (vde_send(b, frame, sizeof frame, MSG_DONTWAIT) != sizeof frame)
			FAIL("b's vde_send: %s", strerror(errno));
	}

	static struct blocked sender;
	sender.conn = a;
	sender.number = filled;
	pthread_t thread;
	if (pthread_create(&thread, NULL, blocking_send, &sender) != 0)
		FAIL("pthread_create");
	usleep(50 * 1000);
	if (atomic_load(&sender.done))
		FAIL("vde_send returned %zd with no room (errno %d)", sender.result, sender.error);

	/* Receive B's frames on A while A's send is blocked. */
	static struct timed_recv r;
	r.conn = a;
	double slowest = 0;
	int calls = 0;
	for (uint32_t got = 0; got < RECVS;) {
		if (poll(&p, 1, 1000) <= 0)
			FAIL("a: no readiness with b's frames waiting (got %u)", got);
		timed_recv(&r);
		calls++;
		if (r.seconds > slowest)
			slowest = r.seconds;
		if (r.result == 1)
			continue;
		if (r.result != FRAME_LEN || memcmp(r.buf + 6, B_MAC, 6) != 0 || get32(r.buf + 14) != got)
			FAIL("a: vde_recv gave %zd, not b's frame %u", r.result, got);
		got++;
	}
	/* A receive held up by the waiting send would wait until B reads,
	 * which comes only after this loop: it would never return. So a cap
	 * far above a busy CPU's time slice tells the two apart. */
	if (slowest > 2.0)
		FAIL("a vde_recv took %.0f ms while a vde_send waited", slowest * 1000);
	printf("ok: the slowest vde_recv took %.1f ms while a vde_send waited\n", slowest * 1000);
	if (atomic_load(&sender.done))
		FAIL("vde_send returned %zd while b still had no room", sender.result);

	/* B reads: room for the blocked send, whose frame must reach B. */
	uint32_t next = 0;
	while (next <= filled) {
		if (poll(&pb, 1, 5000) <= 0)
			FAIL("b: nothing more after %u of %u frames", next, filled + 1);
		ssize_t n = vde_recv(b, frame, sizeof frame, 0);
		if (n == 1)
			continue;
		if (n != FRAME_LEN || get32(frame + 14) != next)
			FAIL("b: vde_recv gave %zd, frame %u, want frame %u", n, get32(frame + 14), next);
		next++;
	}
	pthread_join(thread, NULL);
	if (sender.result != FRAME_LEN)
		FAIL("the blocked vde_send returned %zd (%s)", sender.result, strerror(sender.error));
	printf("ok: %d vde_recv while a vde_send waited, slowest %.3f ms; %u frames filled the room\n",
	       calls, slowest * 1000, filled);
	vde_close(a);
	vde_close(b);
	return 0;
}

static int dead_reader(const char *url)
{
	alarm(30);
	int ready[2];
	if (pipe(ready) < 0)
		FAIL("pipe");
	pid_t child = fork();
	if (child == 0) {
		VDECONN *stuck = open_or_die(url, "contract-stuck");
		(void)stuck;
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		FAIL("the stuck reader did not join");
	VDECONN *a = open_or_die(url, "contract-a");
	uint32_t filled = fill(a, SENDER_MAC);
	pid_t killer = fork();
	if (killer == 0) {
		usleep(300 * 1000);
		kill(child, SIGKILL);
		_exit(0);
	}
	unsigned char frame[FRAME_LEN];
	make_frame(frame, SENDER_MAC, filled);
	double start = now();
	ssize_t n = vde_send(a, frame, sizeof frame, 0);
	double waited = now() - start;
	waitpid(killer, NULL, 0);
	waitpid(child, NULL, 0);
	if (n != FRAME_LEN)
		FAIL("vde_send returned %zd (%s)", n, strerror(errno));
	if (waited < 0.2)
		FAIL("vde_send returned after %.0f ms: it did not wait for the live reader", waited * 1000);
	if (waited > 5)
		FAIL("vde_send waited %.1f s for a dead reader", waited);
	printf("ok: a blocked vde_send returned %.0f ms after it began (the reader died at 300 ms)\n",
	       waited * 1000);
	vde_close(a);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "recv") == 0)
		return recv_count(argv[2], strtoul(argv[3], NULL, 0));
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "send") == 0)
		return send_count(argv[2], strtoul(argv[3], NULL, 0), argc == 5 ? argv[4] : NULL);
	if (argc == 3 && strcmp(argv[1], "blocked-send") == 0)
		return blocked_send(argv[2]);
	if (argc == 3 && strcmp(argv[1], "dead-reader") == 0)
		return dead_reader(argv[2]);
	fprintf(stderr, "usage: contract recv URL COUNT | send URL COUNT [TARGET_MAC] |\n"
	                "       blocked-send URL | dead-reader URL\n");
	return 2;
}
