/*
 * What a little extra work per frame costs a sleeping receiver.
 *
 * A paced AF_UNIX sender (absolute deadlines, clock_nanosleep) sends
 * 64-byte datagrams to a receiver in QEMU's pattern (poll, then one
 * recv) for 3 seconds; the receiver does EXTRA per frame and prints its
 * CPU time (getrusage) per frame:
 *
 *   pages K   read one line of each of K pages of its own memory
 *   shared K  read K cache lines the sender wrote just before sending
 *   work K    K iterations of a multiply-add (about 4 instructions each)
 *   code K    K cache lines of code, one jump in each (K instructions
 *             spread over K lines: what a receive path's code size costs
 *             when it runs once per wake-up)
 *
 *   cc -O2 -o receive_extras receive_extras.c
 *   for k in 0 8 32; do ./receive_extras 5000 pages $k; done
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum extra { PAGES, SHARED, WORK, CODE };

/*
 * 512 cache lines of code, each a jump to the next: entering K lines before
 * the end runs K instructions on K lines.
 */
#define CODE_LINES 512
__asm__(".text\n.p2align 6\ncode_lines:\n"
	".rept 512\njmp 1f\n.p2align 6\n1:\n.endr\n"
	"code_lines_end:\nret\n");
extern char code_lines[], code_lines_end[];

static void run_code_lines(int k)
{
	void (*entry)(void) = (void (*)(void))(code_lines_end - 64 * k);
	entry();
}

/* One line in each of K pages, 7 pages apart, at different offsets. */
static size_t line_of(int k) { return (size_t)k * 4096 * 7 + 64 * (k & 31); }

static double cpu_us(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
}

static void receive(int fd, long frames, enum extra extra, int k, volatile char *mem)
{
	char buf[2048];
	unsigned long sum = 0;
	long got = 0;
	double start = cpu_us();
	while (got < frames) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		poll(&pfd, 1, -1);
		if (recv(fd, buf, sizeof buf, 0) > 0)
			got++;
		if (extra == CODE) {
			run_code_lines(k);
			continue;
		}
		for (int i = 0; i < k; i++) {
			if (extra == WORK) {
				sum = sum * 31 + i;
				__asm__ volatile("" : "+r"(sum));
			} else {
				sum += mem[line_of(i)];
			}
		}
	}
	printf("%s %d: %.2f us a frame (%lu)\n",
	       extra == PAGES ? "pages" : extra == SHARED ? "shared" : extra == CODE ? "code" : "work", k,
	       (cpu_us() - start) / got, sum & 1);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s RATE pages|shared|work|code K\n", argv[0]);
		return 2;
	}
	int rate = atoi(argv[1]), k = atoi(argv[3]);
	enum extra extra = !strcmp(argv[2], "pages")	 ? PAGES :
			   !strcmp(argv[2], "shared") ? SHARED :
			   !strcmp(argv[2], "code")	 ? CODE :
							   WORK;
	if (rate <= 0 || k < 0 || (extra != WORK && k > CODE_LINES)) {
		fprintf(stderr, "RATE must be positive, K at least 0 (pages, shared, code: at most 512)\n");
		return 2;
	}
	long frames = (long)rate * 3;
	size_t len = 64 << 20;
	/* Shared for "shared"; the receiver's own (copy on write) otherwise. */
	volatile char *mem = mmap(0, len, PROT_READ | PROT_WRITE,
				  (extra == SHARED ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	int sv[2];
	if (mem == MAP_FAILED || socketpair(AF_UNIX, SOCK_DGRAM, 0, sv)) {
		perror("receive_extras");
		return 1;
	}
	pid_t child = fork();
	if (child == 0) {
		close(sv[0]);
		receive(sv[1], frames, extra, k, mem);
		_exit(0);
	}
	close(sv[1]);
	char frame[64] = { 0 };
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	long gap = 1000000000L / rate;
	for (long i = 0; i < frames; i++) {
		t.tv_nsec += gap;
		while (t.tv_nsec >= 1000000000L) {
			t.tv_nsec -= 1000000000L;
			t.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, 0);
		if (extra == SHARED)
			for (int j = 0; j < k; j++)
				mem[line_of(j)] = (char)i;
		send(sv[0], frame, sizeof frame, 0);
	}
	waitpid(child, 0, 0);
	return 0;
}
