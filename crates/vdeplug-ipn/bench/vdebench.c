/*
 * vdebench: one sender, N receivers, all through libvdeplug, so that any
 * vdeplug URL (ipn://, vde://, hub://...) is measured the same way.
 *
 *   vdebench -s SEND_URL -r RECV_URL [-f FIRST_RECV_URL] [-1]
 *            -n RECEIVERS -l FRAME_BYTES -t SECONDS
 *
 * Receivers are forked first, one at a time (receiver 0 opens
 * FIRST_RECV_URL if given: vdeplug4's hub:// makes its first opener the
 * hub, which forwards only while it calls vde_recv). Each receiver polls
 * its datafd and calls vde_recv until it returns no frame, < 14 (ipn://
 * returns 1 when nothing waits, as libvdeplug(3) allows; vde:// datafds
 * are set O_NONBLOCK, giving -1/EAGAIN).
 * With -1, receiver 0 calls vde_recv once per readiness instead (the hub
 * owner's vde_recv blocks in epoll_wait when nothing is pending).
 *
 * The sender sends broadcast frames of FRAME_BYTES (Ethernet header
 * included) as fast as vde_send returns for SECONDS, then the receivers
 * get 300 ms to drain and report. Output, one line:
 *   sent=N send_errors=E secs=S rx=R0,R1,...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libvdeplug.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXRECV 16

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *url)
{
	fprintf(stderr, "vdebench: %s %s: %s\n", what, url, strerror(errno));
	exit(1);
}

/* Counts frames until the stop pipe is readable, then drains and
 * writes the count to the result pipe. */
static void receiver(const char *url, int once, int ready_fd, int stop_fd, int result_fd)
{
	static unsigned char buf[VDE_ETHBUFSIZE];
	VDECONN *conn = vde_open((char *)url, "vdebench-rx", NULL);
	if (!conn)
		die("receiver vde_open", url);
	int fd = vde_datafd(conn);
	if (!once && strncmp(url, "ipn://", 6) != 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	uint64_t count = 0;
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1)
		exit(1);
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
	int stopping = 0;
	double stop_at = 0;
	for (;;) {
		int n = poll(p, 2, stopping ? 10 : 1000);
		if (n < 0 && errno != EINTR)
			die("poll", url);
		if (p[1].revents & (POLLIN | POLLHUP)) {
			stopping = 1;
			stop_at = now();
			p[1].fd = -1;
		}
		if (p[0].revents & POLLIN) {
			ssize_t len;
			if (once) {
				if ((len = vde_recv(conn, buf, sizeof buf, 0)) >= 14)
					count++;
			} else {
				while ((len = vde_recv(conn, buf, sizeof buf, 0)) >= 14)
					count++;
			}
		} else if (stopping && (n == 0 || now() - stop_at > 1.0)) {
			break;
		}
	}
	if (write(result_fd, &count, sizeof count) != sizeof count)
		exit(1);
	vde_close(conn);
	exit(0);
}

int main(int argc, char **argv)
{
	const char *send_url = NULL, *recv_url = NULL, *first_url = NULL;
	int nrecv = 1, size = 64, once = 0;
	double secs = 3;
	int opt;
	while ((opt = getopt(argc, argv, "s:r:f:1n:l:t:")) != -1) {
		switch (opt) {
		case 's': send_url = optarg; break;
		case 'r': recv_url = optarg; break;
		case 'f': first_url = optarg; break;
		case '1': once = 1; break;
		case 'n': nrecv = atoi(optarg); break;
		case 'l': size = atoi(optarg); break;
		case 't': secs = atof(optarg); break;
		default: goto usage;
		}
	}
	if (!send_url || !recv_url || nrecv < 1 || nrecv > MAXRECV || size < 14 || size > VDE_ETHBUFSIZE)
		goto usage;

	int ready[2], stop[2], result[MAXRECV][2];
	pid_t pids[MAXRECV];
	if (pipe(ready) < 0 || pipe(stop) < 0)
		die("pipe", "");
	for (int i = 0; i < nrecv; i++) {
		if (pipe(result[i]) < 0)
			die("pipe", "");
		const char *url = (i == 0 && first_url) ? first_url : recv_url;
		if ((pids[i] = fork()) == 0) {
			close(stop[1]);
			receiver(url, once && i == 0, ready[1], stop[0], result[i][1]);
		}
		char c;
		if (read(ready[0], &c, 1) != 1) {
			fprintf(stderr, "vdebench: receiver %d failed to start\n", i);
			return 1;
		}
	}
	close(stop[0]);

	VDECONN *conn = vde_open((char *)send_url, "vdebench-tx", NULL);
	if (!conn)
		die("sender vde_open", send_url);
	usleep(300 * 1000); /* let joins settle (switch ports, hub accepts) */

	unsigned char frame[VDE_ETHBUFSIZE];
	memset(frame, 0xff, 6);
	unsigned char src[6] = {0x02, 0xbe, 0x4c, 0, 0, 1};
	memcpy(frame + 6, src, 6);
	frame[12] = 0x88; frame[13] = 0xb5;
	memset(frame + 14, 0x5a, size - 14);

	uint64_t sent = 0, errors = 0;
	double start = now(), end = start + secs, t = start;
	while (t < end) {
		for (int k = 0; k < 256; k++) {
			memcpy(frame + 14, &sent, size - 14 < 8 ? size - 14 : 8);
			if (vde_send(conn, frame, size, 0) == size)
				sent++;
			else
				errors++;
		}
		t = now();
	}
	double elapsed = t - start;
	usleep(300 * 1000); /* let receivers drain */
	close(stop[1]);
	printf("sent=%llu send_errors=%llu secs=%.3f rx=", (unsigned long long)sent,
	       (unsigned long long)errors, elapsed);
	for (int i = 0; i < nrecv; i++) {
		uint64_t count = 0;
		if (read(result[i][0], &count, sizeof count) != sizeof count)
			fprintf(stderr, "vdebench: receiver %d gave no count\n", i);
		printf("%s%llu", i ? "," : "", (unsigned long long)count);
		waitpid(pids[i], NULL, 0);
	}
	printf("\n");
	vde_close(conn);
	return 0;
usage:
	fprintf(stderr, "usage: vdebench -s SEND_URL -r RECV_URL [-f FIRST_RECV_URL] [-1] "
	                "-n RECEIVERS -l FRAME_BYTES -t SECONDS\n");
	return 2;
}
