/*
 * ipn.h - the C API of ipn, Inter Process Networking for Linux.
 *
 * A network is a directory. Processes join it as ports; every frame a port
 * sends reaches every other reading port (a hub), or, on a switch network,
 * the port that owns the destination address. There is no server: frames
 * travel through shared memory, and a port's file descriptor (ipn_fd) is
 * readable while frames wait for it.
 *
 *     cc prog.c $(pkg-config --cflags --libs ipn)
 *
 *     struct ipn_port *port = ipn_join("/tmp/net", "my program");
 *     if (port == NULL) { fprintf(stderr, "%s\n", ipn_last_error()); exit(1); }
 *     ipn_send(port, frame, len);
 *     ssize_t n = ipn_recv(port, buf, sizeof buf, 1000);   (wait up to 1 s)
 *     ipn_close(port);
 *
 * Conventions
 *
 *   - A call that fails returns -1 (or NULL) and sets errno; the errors each
 *     call can give are listed with it. ipn_last_error() returns a sentence
 *     saying what went wrong, with the path and what to do about it.
 *   - EFAULT: a NULL pointer where the call needs memory (a path, a frame,
 *     a buffer). EBADF: a NULL port, or a port that does not send (joined
 *     read-only) or receive (joined write-only). EIO: an internal error (a
 *     bug in ipn; no Rust panic ever unwinds into your program).
 *   - Networks are the same as those of the ipn command, QEMU's
 *     -netdev vde,sock=ipn:///PATH and every other ipn program: they all
 *     share them.
 *   - Threads: any call may be made from any thread. Calls on one port are
 *     serialized by a lock inside it, so a thread blocked in ipn_recv()
 *     holds up an ipn_send() on the same port from another thread until the
 *     receive returns. To send and receive from different threads at once,
 *     join twice (IPN_JOIN_WRITE_ONLY and IPN_JOIN_READ_ONLY), or poll
 *     ipn_fd() and receive with a timeout of 0. Do not use a port during or
 *     after ipn_close().
 *   - Signals: to confine a SIGBUS from a network file that a member
 *     truncated, the library installs a SIGBUS handler when it maps its
 *     first network. It handles only faults inside network mappings and
 *     passes every other SIGBUS to the handler installed before it (or,
 *     if that was the default, the process dies of SIGBUS as usual).
 *   - Signal handlers do not interrupt a wait: ipn_recv() and ipn_send()
 *     go on waiting until their timeout. To stay responsive to signals,
 *     wait with a timeout, or poll ipn_fd() yourself.
 *
 * ABI stability (soname libipn.so.0)
 *
 *   - struct ipn_port is opaque: only pointers to it cross the API.
 *   - struct ipn_config begins with its size. Initialize it with
 *     ipn_config_init(), an inline function that passes the size your
 *     program was compiled with, so that a library newer than your header
 *     writes and reads only the fields your program knows. New fields are
 *     only ever appended, and their default is what a zero means, so a
 *     program built with an older header gets the defaults for them. A
 *     library older than your header accepts the larger structure as long
 *     as the fields it does not know are zero, and fails with E2BIG if not.
 *   - Functions and constants are only ever added. A change that breaks
 *     programs built against this header would change the soname to
 *     libipn.so.1.
 *
 * Documentation: the ipn(1) and libvdeplug_ipn(1) manual pages, and
 * /usr/share/doc/ipn/ (README, DESIGN, THREAT-MODEL, the examples).
 */
#ifndef IPN_H
#define IPN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A joined port. Opaque; get one from ipn_join(), free it with ipn_close(). */
struct ipn_port;

/* How frames are delivered (struct ipn_config's protocol). */
#define IPN_HUB 0u     /* every frame reaches every other reading port */
#define IPN_SWITCH 1u  /* a learning switch: a unicast frame to an address
                          seen sending from some port reaches only that
                          port; broadcast, multicast and unknown
                          destinations reach every port */

/* The parameters of a new network. Always initialize with ipn_config_init(),
 * then change the fields you want. */
struct ipn_config {
    uint32_t size;        /* sizeof(struct ipn_config): set by ipn_config_init() */
    uint32_t ports;       /* most ports joined at once, 1..4096 (default 64) */
    uint32_t mtu;         /* largest frame in bytes, Ethernet header included,
                             64..65535 (default 1514) */
    uint32_t ring_frames; /* frames buffered per sender, a power of two,
                             2..65536; 0: the default, 256 or one per KiB
                             of ring_bytes if that is more */
    uint64_t ring_bytes;  /* bytes of frames buffered per sender, a power of
                             two from two frames of the MTU to 1 GiB;
                             0: the default, 256 KiB or four frames of the
                             MTU if that is more */
    int64_t group;        /* group owning the network (a gid); -1: the
                             creator's (default) */
    uint32_t lossless;    /* 0: lossy (default): a slow reader loses frames,
                             counted; senders never wait. 1: senders wait
                             for the slowest live reader */
    uint32_t protocol;    /* IPN_HUB (default) or IPN_SWITCH */
    uint32_t mode;        /* permission bits of the network directory and
                             its files; the owner needs rwx (default 0770).
                             A directory others may write to is made
                             sticky, as /tmp is */
    uint32_t reserved;    /* 0 */
};

/* The size of the first version of struct ipn_config: the smallest size
 * the library accepts. */
#define IPN_CONFIG_SIZE_V1 48u

/* The largest size of struct ipn_config the library accepts: no version
 * comes near it, so a larger size is a mistake, refused. */
#define IPN_CONFIG_SIZE_MAX 4096u

/* Fills the first `size` bytes of *config with the defaults and sets
 * config->size to `size`. Call it through ipn_config_init().
 * Returns 0, or -1 with errno:
 *   EFAULT  config is NULL
 *   EINVAL  size is smaller than IPN_CONFIG_SIZE_V1 or larger than
 *           IPN_CONFIG_SIZE_MAX (nothing is written) */
int ipn_config_init_size(struct ipn_config *config, size_t size);

/* Fills *config with the defaults: a 64-port lossy hub, MTU 1514, 256
 * frames and 256 KiB per sender, mode 0770, the creator's group. */
static inline int ipn_config_init(struct ipn_config *config)
{
    return ipn_config_init_size(config, sizeof *config);
}

/* Creates a network at `path`: a new directory (its parent must exist), or
 * an empty directory of the caller's. `config` NULL: the defaults.
 * Returns 0, or -1 with errno:
 *   EEXIST  a network, or a file, is already at `path`
 *   EINVAL  an impossible configuration (a value out of range, a mode that
 *           locks the owner out, reserved not 0, size below
 *           IPN_CONFIG_SIZE_V1), or `path` is a symbolic link, or a
 *           directory that is not empty or not yours
 *   E2BIG   config->size is larger than this library knows and the fields
 *           it does not know are not zero
 *   EACCES  the parent directory may not be written to, or the group may
 *           not be given
 *   ENOSPC  the file system cannot hold the network's shared file
 *   EFAULT  path is NULL
 *   others  the system error of creating the directory or its files
 *           (ENOENT: the parent does not exist, ENOTDIR, ENAMETOOLONG, EROFS,
 *           EPERM, ...) */
int ipn_create(const char *path, const struct ipn_config *config);

/* Removes the network at `path`: its files and its directory.
 * Flags: IPN_REMOVE_FORCE removes it even while ports are joined (they
 * keep working among themselves, but nobody new can join them).
 * Returns 0, or -1 with errno:
 *   ENOENT  there is no network at `path`
 *   EBUSY   ports are still joined (and no IPN_REMOVE_FORCE)
 *   EINVAL  unknown flags; `path` is not an ipn network (without
 *           IPN_REMOVE_FORCE); or the directory also holds files ipn did
 *           not make: the network's own files are removed, the directory
 *           and those files stay (ipn_last_error() names them)
 *   EACCES  the network's directory may not be written to
 *   EFAULT  path is NULL
 *   others  the system error of removing a file */
#define IPN_REMOVE_FORCE 0x1u
int ipn_remove(const char *path, unsigned int flags);

/* Joins the network at `path` as a port that sends and receives.
 * `description` (NULL: none) is shown by `ipn status`; 64 bytes are kept.
 * The port receives what is sent from now on. Returns the port, or NULL
 * with errno:
 *   ENOENT  there is no network at `path` (create it first, or use
 *           ipn_join_ex() with IPN_JOIN_CREATE)
 *   EACCES  the network's mode and group do not let you in
 *           (ipn_last_error() says which group would)
 *   EUSERS  every port is taken
 *   EINVAL  `path` is not a usable ipn network (a file, a symbolic link, a
 *           network of another layout version, a damaged one)
 *   EFAULT  path is NULL
 *   others  the system error of opening the directory or its files
 *           (ENOTDIR, ENAMETOOLONG, EMFILE, ENOMEM, ...) */
struct ipn_port *ipn_join(const char *path, const char *description);

/* ipn_join_ex() flags. */
#define IPN_JOIN_READ_ONLY 0x1u  /* never send (EBADF) */
#define IPN_JOIN_WRITE_ONLY 0x2u /* never receive (EBADF); lossless senders
                                    never wait for this port */
#define IPN_JOIN_CREATE 0x4u     /* create the network with `config` (NULL:
                                    the defaults) if there is none; safe
                                    against concurrent creators */

/* ipn_join() with flags, and the configuration of the network to create
 * with IPN_JOIN_CREATE (ignored without it: the network's own settings
 * apply). Returns the port, or NULL with errno: those of ipn_join(), those
 * of ipn_create() with IPN_JOIN_CREATE (but never EEXIST), and
 *   EINVAL  unknown flags, or both IPN_JOIN_READ_ONLY and
 *           IPN_JOIN_WRITE_ONLY */
struct ipn_port *ipn_join_ex(const char *path, const char *description,
                             unsigned int flags, const struct ipn_config *config);

/* Sends one frame (any bytes; an Ethernet frame for networks that VMs
 * join). On a lossy network it never waits. On a lossless one it waits
 * until every live reader has room (never for a port that died or does
 * not read). Returns len, or -1 with errno:
 *   EMSGSIZE  len is larger than the network's MTU (ipn_mtu()); nothing
 *             was sent
 *   EINVAL    len is 0
 *   EBADF     port is NULL, or it was joined read-only
 *   EFAULT    frame is NULL
 *   ENETDOWN  the network's shared file was truncated under the port: the
 *             network is damaged; close the port, remove the network and
 *             create it again
 *   EIO       internal error */
ssize_t ipn_send(struct ipn_port *port, const void *frame, size_t len);

/* ipn_send() waiting at most timeout_ms milliseconds for room on a
 * lossless network: 0 does not wait, -1 waits as long as it takes (as
 * ipn_send). Returns len, or -1 with errno: those of ipn_send(), and
 *   EAGAIN  a live reader still had no room when the time was up (nothing
 *           was sent; lossless networks only)
 *   EINVAL  timeout_ms below -1 */
ssize_t ipn_send_timeout(struct ipn_port *port, const void *frame, size_t len,
                         int timeout_ms);

/* Receives one frame into buf, waiting at most timeout_ms milliseconds for
 * one: 0 does not wait, -1 waits as long as it takes. Frames arrive in the
 * order each sender sent them; a port never receives its own. A frame
 * longer than len is truncated to len (a buffer of ipn_mtu() + 4 bytes
 * never truncates: a frame with an 802.1Q tag may be 4 bytes longer than
 * the MTU, which counts frames without their tag, and no longer frame is
 * ever received: one that a misbehaving member wrote into the network is
 * dropped and counted); len 0 takes a frame and returns 0. Returns the
 * number of bytes copied, or -1 with errno:
 *   EAGAIN    no frame came within timeout_ms (at once, for 0)
 *   EBADF     port is NULL, or it was joined write-only
 *   EFAULT    buf is NULL and len is not 0
 *   EINVAL    timeout_ms below -1
 *   ENOMEM    the kernel could not wait on the port's fd (another system
 *             error of poll(2) is passed on the same way)
 *   ENETDOWN  the network is damaged (see ipn_send)
 *   EIO       internal error
 * With poll(2): when ipn_fd() is readable, call ipn_recv(port, buf, len, 0)
 * until it fails with EAGAIN; that last call also makes the fd not
 * readable again until the next frame comes. (A timeout of 0 may look
 * again for a fraction of a millisecond while frames are streaming in.) */
ssize_t ipn_recv(struct ipn_port *port, void *buf, size_t len, int timeout_ms);

/* The port's file descriptor for poll(2), select(2) or epoll(7): readable
 * while frames wait for the port. After an ipn_recv() that failed with
 * EAGAIN, a port joining or leaving also makes it readable (once); to
 * follow who is there, look at ipn_readers() or ipn_writers() after each
 * such receive and before polling. The fd belongs to the port: do not
 * read, write or close it. Returns the fd, or -1 with errno EBADF (port is
 * NULL). */
int ipn_fd(struct ipn_port *port);

/* The network's MTU: the largest frame, in bytes. -1/EBADF if port is NULL. */
int ipn_mtu(struct ipn_port *port);

/* This port's number in the network (as `ipn status` shows it).
 * -1/EBADF if port is NULL. */
int ipn_index(struct ipn_port *port);

/* Live ports, this one included, that receive (ipn_readers) or send
 * (ipn_writers), now. -1/EBADF if port is NULL. */
int ipn_readers(struct ipn_port *port);
int ipn_writers(struct ipn_port *port);

/* Leaves the network and frees the port. NULL is ignored. A process that
 * dies without closing its ports leaves too: the others carry on and the
 * next joiner reuses the slot. */
void ipn_close(struct ipn_port *port);

/* What went wrong in the last call that failed on this thread: a sentence
 * naming the path and what to do, e.g. "/tmp/net: no such network; create
 * it with `ipn create /tmp/net`". Successful calls leave it as it was (as
 * errno). "" if no call failed yet. Never NULL; valid until the next call
 * that fails on this thread. */
const char *ipn_last_error(void);

/* The library's version, e.g. "0.1.0". */
const char *ipn_version(void);

#ifdef __cplusplus
}
#endif

#endif /* IPN_H */
