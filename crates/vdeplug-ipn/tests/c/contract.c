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
 *
 * Frames: destination, source, ethertype 0x88b5, then the frame's number
 * and its broadcast number (0xffffffff for unicast), both 32-bit
 * little-endian, then padding to 60 bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libvdeplug.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "recv") == 0)
		return recv_count(argv[2], strtoul(argv[3], NULL, 0));
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "send") == 0)
		return send_count(argv[2], strtoul(argv[3], NULL, 0), argc == 5 ? argv[4] : NULL);
	fprintf(stderr, "usage: contract recv URL COUNT | send URL COUNT [TARGET_MAC]\n");
	return 2;
}
