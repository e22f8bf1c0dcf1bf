/*
 * vdebench: one sender, N receivers, all through libvdeplug, so that any
 * vdeplug URL (ipn://, vde://, hub://...) is measured the same way.
 *
 *   vdebench -s SEND_URL -r RECV_URL [-f FIRST_RECV_URL] [-1]
 *            [-p once|drain] [-R RATE] -n RECEIVERS -l FRAME_BYTES -t SECONDS
 *
 * Receivers are forked first, one at a time (receiver 0 opens
 * FIRST_RECV_URL if given: vdeplug4's hub:// makes its first opener the
 * hub, which forwards only while it calls vde_recv). Each receiver polls
 * its datafd, then:
 *
 *   -p once  (default) calls vde_recv exactly once per readiness: what
 *            QEMU's vde backend (net/vde.c, vde_to_qemu) and vde_plug do;
 *   -p drain calls vde_recv until it returns no frame, < 14 (ipn://
 *            returns 1 when nothing waits, as libvdeplug(3) allows; vde://
 *            datafds are set O_NONBLOCK, giving -1/EAGAIN). No real client
 *            does this. With -1, receiver 0 calls vde_recv once per
 *            readiness anyway (the hub owner's vde_recv blocks in
 *            epoll_wait when nothing is pending).
 *
 * The sender sends broadcast frames of FRAME_BYTES (Ethernet header
 * included, then a sequence number and a CLOCK_MONOTONIC stamp) for
 * SECONDS: as fast as vde_send returns, or with -R paced at RATE frames/s
 * on a grid of absolute deadlines (timer slack 1 ns; clock_nanosleep
 * until the median of its overshoot so far (tracked in 250 ns steps)
 * plus 5 us before each deadline, then a spin on clock_gettime; a
 * deadline missed by more than an interval is skipped, not made up with a
 * burst): as ipn-bench's pace.rs. Then the receivers
 * get 300 ms to drain and report. Output, one line:
 *
 *   sent=N send_errors=E secs=S rx=R0,R1,... cpu_ns=C0,C1,...
 *
 * cpu_ns: each receiver's user + system CPU time from its first frame to
 * the end. With -R the line goes on with
 *
 *   lat_ns=P50,P99,P99.9 samples=K late_ns=P50,P99 skipped=M
 *
 * lat_ns: one-way latency over every frame of every receiver (its clock
 * after vde_recv returned minus the stamp taken before vde_send);
 * late_ns: how late the sender's sends were after their deadlines.
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
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXRECV 16
#define ETHERTYPE_HI 0x88
#define ETHERTYPE_LO 0xb5
/* Ethernet header, then the sequence number, then the stamp. */
#define SEQ_AT 14
#define STAMP_AT 22
#define STAMPED_SIZE 30
#define SPIN_NS 5000
#define OVERSHOOT_STEP_NS 250

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return ((uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	        (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)) * 1000u;
}

static void die(const char *what, const char *url)
{
	fprintf(stderr, "vdebench: %s %s: %s\n", what, url, strerror(errno));
	exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank on sorted samples. */
static uint64_t percentile(const uint64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)(n * p + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Counts frames (and, with max_samples > 0, their latencies) until the
 * stop pipe is readable, then drains and writes to the result pipe: the
 * count, the CPU time, the number of samples, the samples. */
static void receiver(const char *url, int once, size_t max_samples, int ready_fd, int stop_fd,
                     int result_fd)
{
	static unsigned char buf[VDE_ETHBUFSIZE];
	VDECONN *conn = vde_open((char *)url, "vdebench-rx", NULL);
	if (!conn)
		die("receiver vde_open", url);
	int fd = vde_datafd(conn);
	if (!once && strncmp(url, "ipn://", 6) != 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	uint64_t *samples = max_samples ? calloc(max_samples, sizeof *samples) : NULL;
	if (max_samples && !samples)
		die("calloc", url);
	uint64_t count = 0, nsamples = 0, cpu_first = 0;
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1)
		exit(1);
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
	int stopping = 0;
	uint64_t stop_at = 0;
	for (;;) {
		int n = poll(p, 2, stopping ? 10 : 1000);
		if (n < 0 && errno != EINTR)
			die("poll", url);
		if (p[1].revents & (POLLIN | POLLHUP)) {
			stopping = 1;
			stop_at = now_ns();
			p[1].fd = -1;
		}
		if (p[0].revents & POLLIN) {
			do {
				ssize_t len = vde_recv(conn, buf, sizeof buf, 0);
				if (len < 14)
					break;
				if (count++ == 0)
					cpu_first = cpu_ns();
				if (nsamples < max_samples && len >= STAMPED_SIZE &&
				    buf[12] == ETHERTYPE_HI && buf[13] == ETHERTYPE_LO) {
					uint64_t stamp;
					memcpy(&stamp, buf + STAMP_AT, sizeof stamp);
					uint64_t t = now_ns();
					samples[nsamples++] = t > stamp ? t - stamp : 0;
				}
			} while (!once);
		} else if (stopping && (n == 0 || now_ns() - stop_at > 1000000000u)) {
			break;
		}
	}
	uint64_t cpu = count ? cpu_ns() - cpu_first : 0;
	if (write_all(result_fd, &count, sizeof count) < 0 ||
	    write_all(result_fd, &cpu, sizeof cpu) < 0 ||
	    write_all(result_fd, &nsamples, sizeof nsamples) < 0 ||
	    write_all(result_fd, samples, nsamples * sizeof *samples) < 0)
		exit(1);
	vde_close(conn);
	exit(0);
}

/* The paced sender's clock: see the header comment. */
struct pacer {
	uint64_t interval, next, overshoot, skipped;
	uint64_t *late;
	size_t nlate, maxlate;
};

static uint64_t pace(struct pacer *pc)
{
	uint64_t deadline = pc->next, now = now_ns();
	uint64_t lead = pc->overshoot + SPIN_NS;
	uint64_t wake = deadline > lead ? deadline - lead : 0;
	if (now < wake) {
		struct timespec at = {.tv_sec = wake / 1000000000u, .tv_nsec = wake % 1000000000u};
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
		now = now_ns();
		/* Track the median overshoot; never start spinning more than
		 * half an interval early. */
		if (now - wake > pc->overshoot) {
			pc->overshoot += OVERSHOOT_STEP_NS;
			if (pc->overshoot > pc->interval / 2)
				pc->overshoot = pc->interval / 2;
		} else {
			pc->overshoot = pc->overshoot > OVERSHOOT_STEP_NS ? pc->overshoot - OVERSHOOT_STEP_NS : 0;
		}
	}
	while (now < deadline)
		now = now_ns();
	if (pc->nlate < pc->maxlate)
		pc->late[pc->nlate++] = now - deadline;
	uint64_t behind = (now - deadline) / pc->interval;
	pc->skipped += behind;
	pc->next = deadline + (behind + 1) * pc->interval;
	return now;
}

int main(int argc, char **argv)
{
	const char *send_url = NULL, *recv_url = NULL, *first_url = NULL, *pattern = "once";
	int nrecv = 1, size = 64, first_once = 0;
	double secs = 3, rate = 0;
	int opt;
	while ((opt = getopt(argc, argv, "s:r:f:1p:R:n:l:t:")) != -1) {
		switch (opt) {
		case 's': send_url = optarg; break;
		case 'r': recv_url = optarg; break;
		case 'f': first_url = optarg; break;
		case '1': first_once = 1; break;
		case 'p': pattern = optarg; break;
		case 'R': rate = atof(optarg); break;
		case 'n': nrecv = atoi(optarg); break;
		case 'l': size = atoi(optarg); break;
		case 't': secs = atof(optarg); break;
		default: goto usage;
		}
	}
	int once = strcmp(pattern, "once") == 0;
	if (!once && strcmp(pattern, "drain") != 0)
		goto usage;
	if (!send_url || !recv_url || nrecv < 1 || nrecv > MAXRECV || size < STAMPED_SIZE ||
	    size > VDE_ETHBUFSIZE || rate < 0 || rate > 1e6 || secs <= 0)
		goto usage;
	/* Paced: room for every frame, and some. */
	size_t max_samples = rate > 0 ? (size_t)(rate * secs * 1.1) + 1024 : 0;

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
			receiver(url, once || (first_once && i == 0), max_samples, ready[1], stop[0],
			         result[i][1]);
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
	frame[12] = ETHERTYPE_HI;
	frame[13] = ETHERTYPE_LO;
	memset(frame + 14, 0x5a, size - 14);

	struct pacer pc = {0};
	if (rate > 0) {
		prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
		pc.interval = (uint64_t)(1e9 / rate);
		pc.maxlate = max_samples;
		pc.late = calloc(pc.maxlate, sizeof *pc.late);
		if (!pc.late)
			die("calloc", "");
	}
	uint64_t sent = 0, errors = 0;
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t = start;
	pc.next = start;
	while (t < end) {
		for (int k = 0; k < (rate > 0 ? 1 : 256); k++) {
			if (rate > 0 && (t = pace(&pc)) >= end)
				break;
			memcpy(frame + SEQ_AT, &sent, sizeof sent);
			if (rate > 0) {
				uint64_t stamp = now_ns();
				memcpy(frame + STAMP_AT, &stamp, sizeof stamp);
			}
			if (vde_send(conn, frame, size, 0) == size)
				sent++;
			else
				errors++;
		}
		if (rate == 0)
			t = now_ns();
	}
	double elapsed = (now_ns() - start) / 1e9;
	usleep(300 * 1000); /* let receivers drain */
	close(stop[1]);
	uint64_t rx[MAXRECV], cpu[MAXRECV];
	uint64_t *all = max_samples ? calloc(max_samples * nrecv, sizeof *all) : NULL;
	size_t nall = 0;
	for (int i = 0; i < nrecv; i++) {
		uint64_t n = 0;
		rx[i] = cpu[i] = 0;
		if (read_all(result[i][0], &rx[i], sizeof rx[i]) < 0 ||
		    read_all(result[i][0], &cpu[i], sizeof cpu[i]) < 0 ||
		    read_all(result[i][0], &n, sizeof n) < 0 || n > max_samples ||
		    (n && read_all(result[i][0], all + nall, n * sizeof *all) < 0))
			fprintf(stderr, "vdebench: receiver %d gave no count\n", i);
		else
			nall += n;
		waitpid(pids[i], NULL, 0);
	}
	printf("sent=%llu send_errors=%llu secs=%.3f rx=", (unsigned long long)sent,
	       (unsigned long long)errors, elapsed);
	for (int i = 0; i < nrecv; i++)
		printf("%s%llu", i ? "," : "", (unsigned long long)rx[i]);
	printf(" cpu_ns=");
	for (int i = 0; i < nrecv; i++)
		printf("%s%llu", i ? "," : "", (unsigned long long)cpu[i]);
	if (rate > 0) {
		qsort(all, nall, sizeof *all, cmp_u64);
		qsort(pc.late, pc.nlate, sizeof *pc.late, cmp_u64);
		printf(" lat_ns=%llu,%llu,%llu samples=%zu late_ns=%llu,%llu skipped=%llu",
		       (unsigned long long)percentile(all, nall, 0.5),
		       (unsigned long long)percentile(all, nall, 0.99),
		       (unsigned long long)percentile(all, nall, 0.999), nall,
		       (unsigned long long)percentile(pc.late, pc.nlate, 0.5),
		       (unsigned long long)percentile(pc.late, pc.nlate, 0.99),
		       (unsigned long long)pc.skipped);
	}
	printf("\n");
	vde_close(conn);
	return 0;
usage:
	fprintf(stderr, "usage: vdebench -s SEND_URL -r RECV_URL [-f FIRST_RECV_URL] [-1] "
	                "[-p once|drain] [-R RATE] -n RECEIVERS -l FRAME_BYTES -t SECONDS\n"
	                "(FRAME_BYTES: %d to %d)\n",
	        STAMPED_SIZE, VDE_ETHBUFSIZE);
	return 2;
}
