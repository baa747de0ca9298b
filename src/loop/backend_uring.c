/* io_uring backend, two ways.
 *
 * Readiness, for fd watchers: one-shot IORING_OP_POLL_ADD requests,
 * re-armed after each completion, which gives the same level-triggered
 * behaviour as the epoll and poll backends (a multishot poll only fires on
 * new wake-ups, and a stream that reads once per event would stall).
 * Removal is asynchronous in io_uring: a completion for a watcher may still
 * arrive after the watcher was stopped and even freed. Each poll's user_data
 * therefore names a slot and a generation; a completion whose generation is
 * stale is dropped without touching the watcher.
 *
 * Completion, for socket streams (csock__io_*): recv and send requests
 * that do the I/O themselves, so a message costs no syscall of its own:
 * every request made during an iteration leaves with the next wait, in one
 * io_uring_enter. A recv takes a buffer from a ring of provided buffers at
 * the moment data arrives, so an idle connection holds none (the same
 * promise as the readiness path's pooled buffers). The owner of a request
 * outlives it, so its user_data is simply its address, tagged in bit 0.
 *
 * One file, one job: both ways share one ring, one submission queue and
 * one wait (ur_wait), and the setup, ownership and cancel rules apply to
 * both (the ring's file table, for completion requests, too); split
 * apart, each half would need the other's internals. */
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "loop/loop_int.h"

#define RING_ENTRIES 1024
#define CQ_ENTRIES 16384
#define CANCEL_TAG UINT64_MAX /* user_data of removals: their completions are ignored */
/* Provided buffers for completion recvs, 1 MiB per loop, mapped once and
 * touched only as traffic needs them. Where the kernel consumes them
 * incrementally (IOU_PBUF_RING_INC, 6.12), 16 x 64 KiB: each recv takes
 * only the bytes it got from the current buffer, so 1,000 connections
 * with a 128-byte message each fill two buffers, not a thousand. Else
 * 256 x 4 KiB, a buffer per recv: when all are out (more than 256 sockets
 * delivered data in one wait; at 1,000 connections, 7 recvs in 10 did), a
 * recv ends with -ENOBUFS and is made again at the next wait, once
 * callbacks have given buffers back. */
#define IO_MEM (1u << 20)
#define IO_BUF_SIZE 4096   /* without INC */
#define INC_BUF_SIZE 65536 /* with INC */
#define INC_BUFS (IO_MEM / INC_BUF_SIZE)
/* With INC, the most one recv takes: 64 KiB, a bulk receiver's whole
 * read per completion (4 KiB requests ran a 1 GiB transfer at half
 * epoll's rate, bench/bulk.sh). Larger recvs once broke two things,
 * fixed in the stream since: a recv asked for before the input was
 * offered (inside the read callback, by a TLS flush, on resume) took a
 * full buffer for a message too big; and output the kernel held unsent
 * escaped the write timeout (test_server_limits' non-reader). */
#ifndef RECV_MAX /* -DRECV_MAX=N for an experiment */
#define RECV_MAX 65536
#endif
#define IO_BGID 0
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif
#define CANCEL_QUEUED 2 /* csock__ioreq.cancelled: on cancel_q, not yet asked */
#define SEND_QUEUED 2   /* csock__ioreq.busy: on sendq, not yet a request (ur_send) */
#define SEND_IOV 8      /* queued chunks one send request takes at most */
#define SEND_MSGS 64    /* sendmsg headers made between two kernel entries */
#define FIXED_MAX 32768 /* the ring's file table: fds below this (and RLIMIT_NOFILE) */
#define FIXED_AFTER 16  /* sends a stream makes before its socket goes in the table */

/* The header of a send of several chunks (IORING_OP_SENDMSG). The kernel
 * reads it when the request is submitted (IORING_FEAT_SUBMIT_STABLE, 5.5),
 * so a header lives only until the next kernel entry: the loop keeps one
 * set of them, not one per stream. */
typedef struct {
    struct msghdr mh;
    struct iovec iov[SEND_IOV];
} send_msg;

typedef struct {
    csock__watcher *w; /* NULL: free slot */
    uint32_t gen;
    uint8_t armed;     /* a poll request is in flight for this generation */
    uint8_t retry;     /* arm it at the next wait: no submission slot was free */
} slot;

/* Poll removals that found no submission slot, made at the next wait. A
 * removal lost when this is full only delays the kernel's release of the
 * old poll to the fd's next event: its completion is stale and dropped. */
#define RM_BACKLOG 256

typedef struct {
    struct io_uring ring;
    slot *slots;
    uint32_t nslots, cap;
    uint32_t *free_list;
    uint32_t nfree;
    uint32_t nretry;                 /* slots with retry set */
    uint64_t rm_backlog[RM_BACKLOG]; /* tags of polls to remove */
    unsigned nrm;
    /* completion I/O */
    struct io_uring_buf_ring *br; /* NULL: no provided buffers, readiness only */
    char *bufs;
    unsigned nbufs, buf_size;      /* INC_BUFS x INC_BUF_SIZE, or x IO_BUF_SIZE */
    int inc;                       /* IOU_PBUF_RING_INC: inc_off says where each buffer is */
    uint32_t inc_off[INC_BUFS];    /* bytes of each buffer the kernel has filled */
    char joined[RECV_MAX];         /* a recv cut at a buffer's end, and its rest (join_rest) */
    csock__ioreq *nobuf_head, *nobuf_tail; /* recvs to make again (-ENOBUFS) */
    csock__ioreq *cancelled;               /* taken off nobuf by a cancel: report */
    csock__ioreq *cancel_q;                /* cancels that found no submission slot */
    csock__ioreq **sendq;                  /* sends to make at the next wait (SEND_QUEUED) */
    unsigned nsend, sendq_cap;
    send_msg *smsg;                        /* SEND_MSGS of them, made at the first need */
    unsigned nsmsg;                        /* in use until the kernel has the requests */
    unsigned nreq;                         /* requests whose callback is still to come */
    uint64_t fixed[FIXED_MAX / 64];        /* a bit per fd below nfixed: in the file table */
    unsigned nfixed;
    int disabled; /* made with R_DISABLED: enabled by the first wait, on its thread */
    int single;   /* SINGLE_ISSUER: only `owner` may enter the kernel */
    int defer;    /* DEFER_TASKRUN: completions are posted only by a GETEVENTS enter */
    int armed;    /* a watcher's poll was armed since ur_wait's round began */
    int mshot_refused; /* tests: make the kernel refuse them (CSOCK_TEST_MSHOT_REFUSED) */
    pthread_t owner;
} uring_state;

/* Poll slots: bit 0 clear, index and generation above it. Completion
 * requests: their address with bit 0 set. */
static uint64_t tag(uint32_t idx, uint32_t gen) { return ((uint64_t)gen << 33) | ((uint64_t)idx << 1); }

/* NULL only when the submission queue is full and the kernel refuses to
 * take it now (io_uring_submit failed: out of memory, say). A request made
 * now leaves with the next wait anyway, so callers that cannot fail queue
 * their request for ur_wait to make (sync_pending), which changes nothing
 * the kernel sees; if the ring is broken for good, that wait fails and the
 * loop reports it. */
/* After an entry: once the kernel has taken every request made, their
 * sendmsg headers are free again. */
static void submitted(uring_state *st)
{
    if (st->nsmsg && !io_uring_sq_ready(&st->ring)) st->nsmsg = 0;
}

static struct io_uring_sqe *get_sqe(uring_state *st)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (!sqe) { /* the submission queue is full: hand it to the kernel first */
        io_uring_submit(&st->ring);
        submitted(st);
        sqe = io_uring_get_sqe(&st->ring);
    }
    return sqe;
}

/* Register the buffer ring of st->nbufs entries, with `flags`. */
static int register_bufs(uring_state *st, unsigned flags)
{
    io_uring_buf_ring_init(st->br);
    /* liburing 2.3 names the kernel's `flags` field `pad`. */
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)st->br, .ring_entries = st->nbufs,
                                   .bgid = IO_BGID, .pad = (__u16)flags};
    int rc = io_uring_register_buf_ring(&st->ring, &reg, 0);
    if (rc < 0) return rc;
    for (unsigned i = 0; i < st->nbufs; i++)
        io_uring_buf_ring_add(st->br, st->bufs + (size_t)i * st->buf_size, st->buf_size,
                              (unsigned short)i, io_uring_buf_ring_mask(st->nbufs), (int)i);
    io_uring_buf_ring_advance(st->br, (int)st->nbufs);
    return 0;
}

/* The provided-buffer ring (Linux 5.19), incremental where the kernel has
 * it. Without it the backend still works, readiness-only. */
static int setup_bufs(uring_state *st)
{
    size_t rsz = (IO_MEM / IO_BUF_SIZE) * sizeof(struct io_uring_buf); /* room for either */
    void *ring = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring == MAP_FAILED) return -errno;
    char *bufs = mmap(NULL, IO_MEM, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (bufs == MAP_FAILED) {
        munmap(ring, rsz);
        return -errno;
    }
    st->br = ring;
    st->bufs = bufs;
    const char *plain = getenv("CSOCK_URING_PLAIN");
    int rc = -EINVAL;
    if (!(plain && !strcmp(plain, "1"))) {
        st->nbufs = INC_BUFS;
        st->buf_size = INC_BUF_SIZE;
        st->inc = 1;
        rc = register_bufs(st, IOU_PBUF_RING_INC);
    }
    if (rc < 0) { /* before 6.12: a buffer per recv */
        st->nbufs = IO_MEM / IO_BUF_SIZE;
        st->buf_size = IO_BUF_SIZE;
        st->inc = 0;
        rc = register_bufs(st, 0);
    }
    if (rc < 0) {
        munmap(ring, rsz);
        munmap(bufs, IO_MEM);
        st->br = NULL;
        st->bufs = NULL;
    }
    return rc;
}

/* Registered files: the socket of a stream that keeps talking is put in
 * the ring's file table, at its fd number, so its requests find it there
 * instead of looking the fd up and taking a reference on the file
 * (fget/fput: about 2 % of a 1,000-connection echo server's time in perf,
 * BENCHMARKS.md session 30). Putting it in and taking it out cost a
 * syscall each, as much as a dozen lookups: so only from a stream's
 * FIXED_AFTER-th send on, and a connection that answers once (HTTP with
 * Connection: close) pays nothing. The table is per loop and sparse; a
 * socket holds one of its slots (8 bytes of the kernel's) while its stream
 * lives. Only on kernels that let a file go as soon as its own requests
 * are done (csock__uring_files_ok: 6.13 and later). CSOCK_URING_FIXED=0
 * turns it off, to compare. */
static void setup_fixed(uring_state *st)
{
    const char *env = getenv("CSOCK_URING_FIXED");
    struct rlimit rl;
    struct utsname u;
    if ((env && !strcmp(env, "0")) || uname(&u) < 0 || !csock__uring_files_ok(u.release) ||
        getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    unsigned n = rl.rlim_cur < FIXED_MAX ? (unsigned)rl.rlim_cur : FIXED_MAX;
    if (io_uring_register_files_sparse(&st->ring, n) == 0) st->nfixed = n;
}

/* Before 6.13 the kernel let go of what left the file table in order:
 * only once every request made earlier with a registered file had
 * completed (and then from a work item, up to a second later). A closed
 * stream's socket stayed open, its peer heard no FIN, for as long as any
 * older request waited: another connection's recv, or the peer's own on
 * the same loop, which waited for that FIN (a hang, seen on Debian 12's
 * 6.1: test_stream.ring_sockets_in_file_table). From 6.13 each file in
 * the table is let go when its own requests are done. The release is
 * the version a kernel says it is; a distribution's backport is not
 * trusted with it. */
int csock__uring_files_ok(const char *release)
{
    unsigned major = 0, minor = 0;
    if (!release || sscanf(release, "%u.%u", &major, &minor) != 2) return 0;
    return major > 6 || (major == 6 && minor >= 13);
}

static int fixed_on(const uring_state *st, int fd)
{
    return (unsigned)fd < st->nfixed && (st->fixed[(unsigned)fd / 64] >> ((unsigned)fd % 64) & 1);
}

/* Note fd (below nfixed) as in the table or not. */
static void fixed_mark(uring_state *st, int fd, int on)
{
    uint64_t bit = 1ull << ((unsigned)fd % 64);
    if (on)
        st->fixed[(unsigned)fd / 64] |= bit;
    else
        st->fixed[(unsigned)fd / 64] &= ~bit;
}

/* Slot `idx` of the file table now holds `fd`'s file (-1: none). By the
 * ring's own fd, as enable_ring does: a newer liburing would use the
 * registered ring's index, which belongs to the owner thread only. 1 when
 * done. */
static int files_update(uring_state *st, int idx, int fd)
{
    struct io_uring_files_update up = {.offset = (unsigned)idx, .fds = (uintptr_t)&fd};
    return (int)syscall(__NR_io_uring_register, st->ring.ring_fd, IORING_REGISTER_FILES_UPDATE,
                        &up, 1) == 1;
}

/* Put fd's socket in the file table unless it is there. */
static void fixed_put(uring_state *st, int fd)
{
    if ((unsigned)fd >= st->nfixed || fixed_on(st, fd) || !files_update(st, fd, fd)) return;
    fixed_mark(st, fd, 1);
}

/* Before fd closes or leaves its stream (no request of its is in flight):
 * out of the table, whose reference would keep the socket open. */
static void ur_forget(csock_loop *loop, int fd)
{
    uring_state *st = loop->bstate;
    if (!fixed_on(st, fd)) return;
    fixed_mark(st, fd, 0);
    files_update(st, fd, -1);
}

static int ur_init(csock_loop *loop)
{
    /* For tests only: fail as io_uring_setup does where it is forbidden
     * (seccomp, kernel.io_uring_disabled), to test the fallback of "auto". */
    const char *off = getenv("CSOCK_TEST_NO_URING");
    if (off && !strcmp(off, "1")) return -EPERM;
    uring_state *st = calloc(1, sizeof *st);
    if (!st) return -ENOMEM;
    /* Every reading stream has a recv in flight, so completions can
     * outnumber the submission queue by far: a large completion queue (the
     * kernel also keeps overflow, since 5.5, but that costs allocations). */
    /* COOP_TASKRUN (5.19): a completion (a peer's bytes landing in a
     * parked recv) does not interrupt the loop with an IPI to run its task
     * work; it runs when the loop next enters the kernel, which it does
     * every iteration. Without it, perf showed a fifth of an HTTP server's
     * time in those interrupts. */
    /* SINGLE_ISSUER (6.0): the loop owns its ring, so the kernel skips the
     * submission lock; DEFER_TASKRUN (6.1) on top: the work that posts a
     * completion runs only when the loop waits (io_uring_enter with
     * GETEVENTS, which every wait is), in a batch, not when the kernel
     * interrupts whatever the loop does. The ring is made disabled: the
     * kernel binds it to the thread that enables it, which is the one that
     * first waits on it (ur_wait), not necessarily the one that made it
     * (a server makes its loops on one thread and runs them on others).
     * From then on no other thread may enter it: a csock_server finishes
     * each loop's closes on that loop's own thread, and a wait from another
     * thread (foreign_wait) only serves posts and timers. On 6.18 a wait
     * runs at most 20 deferred completions; more are left for the next
     * wait, which then does not block. Each older kernel refuses a flag it
     * does not know (-EINVAL): try again with fewer. CSOCK_URING_PLAIN=1
     * takes the last (no flags), to compare. */
    static const unsigned tries[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_R_DISABLED,
        IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_R_DISABLED,
        IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    const char *plain = getenv("CSOCK_URING_PLAIN");
    size_t ntries = sizeof tries / sizeof tries[0];
    /* DEFER_TASKRUN is the default where the kernel has it: a sendfile
     * (a static file's answer) is no longer cut short by the task work of
     * completions that land meanwhile: 0.99 sendfile calls per 100 KB
     * answer instead of 1.36-1.41, 1.31-1.39 system calls in all instead
     * of 1.52-1.57. The waits it adds (each runs at most ~20 deferred
     * completions on 6.18) take that back in CPU time: neutral within the
     * noise, for echo too (BENCHMARKS.md, session 35). ur_wait's extra
     * rounds stop when a watcher was armed and the loop's other phases
     * have work (round_again), so a watcher is not dispatched again before
     * the deferred calls its callback made have run (the order epoll and
     * poll give; test_io, test_proxy_defer_handover).
     * CSOCK_URING_DEFER=0 leaves it off (COOP_TASKRUN), to compare. */
    const char *defer = getenv("CSOCK_URING_DEFER");
    size_t first = plain && !strcmp(plain, "1") ? ntries - 1 : defer && !strcmp(defer, "0") ? 1 : 0;
    for (size_t i = first; i < ntries && rc == -EINVAL; i++) {
        struct io_uring_params p = {.flags = tries[i], .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(RING_ENTRIES, &st->ring, &p);
        if (rc < 0) continue;
        st->disabled = st->single = (tries[i] & IORING_SETUP_R_DISABLED) != 0;
        st->defer = (tries[i] & IORING_SETUP_DEFER_TASKRUN) != 0;
    }
    if (rc < 0) {
        free(st);
        return rc;
    }
    loop->bstate = st;
    loop->io_ok = setup_bufs(st) == 0;
    if (loop->io_ok) setup_fixed(st);
    /* Multishot recvs for TCP streams unless CSOCK_URING_MSHOT=0 (single
     * recvs, to compare). For tests, CSOCK_TEST_MSHOT_REFUSED=1 makes each
     * multishot recv one the kernel refuses (-EINVAL), as a kernel without
     * the cap does, to test the fallback (prep_recv). */
    const char *mshot = getenv("CSOCK_URING_MSHOT");
    loop->io_mshot = !(mshot && !strcmp(mshot, "0")); /* && io_ok: csock_loop_new */
    const char *refused = getenv("CSOCK_TEST_MSHOT_REFUSED");
    st->mshot_refused = refused && !strcmp(refused, "1");
    return 0;
}

/* liburing's INT_FLAG_REG_RING (src/int_flags.h): enter_ring_fd is an
 * index into the registered rings of the thread that registered it. */
#define LIBURING_REG_RING 1

/* Not the ring's thread: the kernel would refuse this one (-EEXIST). */
static int foreign(const uring_state *st)
{
    return st->single && !st->disabled && !pthread_equal(st->owner, pthread_self());
}

static void ur_fini(csock_loop *loop)
{
    uring_state *st = loop->bstate;
    if (foreign(st) && (st->ring.int_flags & LIBURING_REG_RING)) {
        /* The index is the owner's: liburing's exit would unregister this
         * thread's ring of that index, perhaps another loop's. The owner's
         * entry goes when that thread exits. */
        st->ring.int_flags &= (__u8)~LIBURING_REG_RING;
        st->ring.enter_ring_fd = st->ring.ring_fd;
    }
    io_uring_queue_exit(&st->ring);
    if (st->br) {
        munmap(st->br, (IO_MEM / IO_BUF_SIZE) * sizeof(struct io_uring_buf));
        munmap(st->bufs, IO_MEM);
    }
    free(st->slots);
    free(st->free_list);
    free(st->sendq);
    free(st->smsg);
    free(st);
}

/* ---- completion I/O -------------------------------------------------------- */

static uint64_t req_tag(csock__ioreq *r) { return (uint64_t)(uintptr_t)r | 1; }

/* poll_first: POLL_FIRST (5.19, as the buffer ring), for a recv asked
 * for again once the last one's bytes were handled, when the peer usually
 * waits for the answer and the socket is empty: without it the kernel
 * tries the recv first, in vain, then arms the poll. A stream's first recv
 * tries at once (bytes or a reset already there are seen in this wait).
 *
 * cap > 0: multishot (IORING_RECV_MULTISHOT), which stays armed and posts a
 * completion per arrival, so a request-reply peer costs one request per
 * `cap` bytes, not one per message (perf: a recv re-armed per message was
 * most of the gap to a hand-written liburing server). The kernel ends it
 * once it has delivered `cap` bytes (the per-request cap in sqe->optlen,
 * which liburing 2.3 calls file_index; 6.15), so a stream that stops
 * consuming is never sent more than its room plus one recv, as with a
 * single recv. A kernel without the cap, or without multishot recv with a
 * length, refuses the request (-EINVAL): req_done then falls back to
 * single recvs for the loop's life. */
static int prep_recv(uring_state *st, csock__ioreq *r, int poll_first, size_t cap)
{
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe) return -ENOMEM;
    r->mshot = cap != 0; /* asked for only while csock__io_mshot() */
    if (r->mshot) {
        io_uring_prep_recv_multishot(sqe, r->fd, NULL, RECV_MAX, 0);
        sqe->file_index = cap < UINT32_MAX ? (uint32_t)cap : UINT32_MAX;
        if (st->mshot_refused) sqe->off = 1; /* a field a recv must leave 0 */
    } else {
        io_uring_prep_recv(sqe, r->fd, NULL, RECV_MAX, 0);
    }
    if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    if (fixed_on(st, r->fd)) sqe->flags |= IOSQE_FIXED_FILE; /* r->fd is its index */
    sqe->buf_group = IO_BGID;
    io_uring_sqe_set_data64(sqe, req_tag(r));
    return 0;
}

static int ur_recv(csock_loop *loop, csock__ioreq *r, int fd, size_t cap)
{
    int again = r->op == CSOCK__IO_RECV && r->fd == fd; /* a stream's recv, asked for again */
    r->fd = fd;
    r->op = CSOCK__IO_RECV;
    r->cancelled = 0;
    uring_state *st = loop->bstate;
    int rc = prep_recv(st, r, again, cap);
    if (rc == 0) {
        st->nreq++;
        r->busy = 1;
        loop->active++; /* like an active watcher: the loop runs on for it */
    }
    return rc;
}

/* Make a queued send a request now, of what its owner has queued by now
 * (the fill callback): 0. Nothing left (the owner dropped its queue
 * since): 1, and it completes as cancelled, reported by the next
 * retry_waiting. No submission slot: -ENOMEM, and it stays queued. */
static int prep_send(csock_loop *loop, csock__ioreq *r)
{
    uring_state *st = loop->bstate;
    /* Several queued chunks leave in one sendmsg (a burst of small writes
     * past one chunk's 952 bytes took two requests, the second a wait
     * later); one, or no header free, in a plain send. */
    struct iovec one;
    send_msg *m = NULL;
    if (st->nsmsg < SEND_MSGS && (st->smsg || (st->smsg = malloc(SEND_MSGS * sizeof *st->smsg))))
        m = &st->smsg[st->nsmsg];
    int n = loop->io_fill(loop, r, m ? m->iov : &one, m ? SEND_IOV : 1);
    r->busy = 1;
    if (!n) {
        r->next = st->cancelled;
        st->cancelled = r;
        return 1;
    }
    struct io_uring_sqe *sqe = get_sqe(st); /* (may submit: frees the headers before m) */
    if (!sqe) {
        r->busy = SEND_QUEUED; /* stays queued: made at the next wait */
        return -ENOMEM;
    }
    if (n == 1) {
        const struct iovec *v = m ? m->iov : &one;
        io_uring_prep_send(sqe, r->fd, v->iov_base, v->iov_len, MSG_NOSIGNAL);
    } else {
        st->nsmsg = (unsigned)(m - st->smsg) + 1;
        m->mh = (struct msghdr){.msg_iov = m->iov, .msg_iovlen = (size_t)n};
        io_uring_prep_sendmsg(sqe, r->fd, &m->mh, MSG_NOSIGNAL);
    }
    if (fixed_on(st, r->fd)) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, req_tag(r));
    return 0;
}

/* A send is made at the next wait, not now: what the owner asks for in
 * the rest of this iteration (the other arrivals of a pipelining peer, a
 * burst of writes) then leaves in the same request, as it would leave in
 * one write(2) from an epoll loop that gets to the socket later. Made at
 * once, the send took what was queued at the first write and left the
 * rest to a second request a wait later: a peer keeping 16 messages in
 * flight saw them split into two trains that never joined again
 * (BENCHMARKS.md, "Issue 16: one send request per iteration"). */
static int ur_send(csock_loop *loop, csock__ioreq *r, int fd)
{
    uring_state *st = loop->bstate;
    if (r->op != CSOCK__IO_SEND || r->fd != fd) r->sends = 0; /* a new owner */
    if (r->sends < FIXED_AFTER)
        r->sends++;
    else
        fixed_put(st, fd);
    r->fd = fd;
    r->op = CSOCK__IO_SEND;
    r->cancelled = 0;
    r->busy = SEND_QUEUED;
    st->nreq++;
    loop->active++;
    if (st->nsend == st->sendq_cap) {
        unsigned cap = st->sendq_cap ? st->sendq_cap * 2 : 64;
        csock__ioreq **q = realloc(st->sendq, cap * sizeof *q);
        if (!q) { /* no room to queue it: make it now, as queued so far */
            if (prep_send(loop, r) >= 0) return 0;
            st->nreq--;
            loop->active--;
            r->busy = 0;
            return -ENOMEM;
        }
        st->sendq = q;
        st->sendq_cap = cap;
    }
    st->sendq[st->nsend++] = r;
    return 0;
}

/* Before entering the kernel: the queued sends become requests. One that
 * finds no submission slot stays queued (the wait then does not block). */
static void prep_sends(csock_loop *loop)
{
    uring_state *st = loop->bstate;
    unsigned keep = 0;
    for (unsigned i = 0; i < st->nsend; i++) {
        csock__ioreq *r = st->sendq[i];
        if (r->busy != SEND_QUEUED) continue; /* made already, by a cancel */
        if (prep_send(loop, r) < 0) st->sendq[keep++] = r;
    }
    st->nsend = keep;
}

static int submit_cancel(uring_state *st, csock__ioreq *r)
{
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe) return -ENOMEM;
    io_uring_prep_cancel64(sqe, req_tag(r), 0);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    return 0;
}

static void ur_cancel(csock_loop *loop, csock__ioreq *r)
{
    uring_state *st = loop->bstate;
    if (r->cancelled == CANCEL_QUEUED) return; /* asked already, at the next wait */
    if (r->cancelled && r->mshot) return;       /* asked already: its end is to come */
    /* A send not made yet is made now, then cancelled like one in flight:
     * as when it was made at the write, the kernel sends what the socket
     * takes at once (an epoll loop's write(2) would have) before the
     * cancel, which then finds it done or stops the rest. */
    if (r->busy == SEND_QUEUED) {
        int rc = prep_send(loop, r);
        if (rc < 0) { /* no slot to make it in: report it cancelled */
            r->busy = 1;
            r->next = st->cancelled;
            st->cancelled = r;
        }
        if (rc) { /* on the cancelled list: reported by the next wait */
            r->cancelled = 1;
            return;
        }
    }
    /* A recv whose -ENOBUFS completion is still to be read must not be made
     * again after this (req_done). */
    r->cancelled = 1;
    /* Waiting for a buffer: not in the kernel, so report it ourselves. */
    for (csock__ioreq **pp = &st->nobuf_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp != r) continue;
        *pp = r->next;
        if (st->nobuf_tail == r) st->nobuf_tail = prev;
        r->next = st->cancelled;
        st->cancelled = r;
        return;
    }
    if (submit_cancel(st, r) < 0) {
        /* An idle peer would never complete it, and its owner waits for
         * the completion to finish: ask at the next wait instead. */
        r->cancelled = CANCEL_QUEUED;
        r->next = st->cancel_q;
        st->cancel_q = r;
    }
}

static void unqueue_cancel(uring_state *st, csock__ioreq *r)
{
    for (csock__ioreq **pp = &st->cancel_q; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->cancelled = 1;
}

static void give_back(uring_state *st, unsigned bid)
{
    io_uring_buf_ring_add(st->br, st->bufs + (size_t)bid * st->buf_size, st->buf_size,
                          (unsigned short)bid, io_uring_buf_ring_mask(st->nbufs), 0);
    io_uring_buf_ring_advance(st->br, 1);
}

/* Where the `res` bytes of a completion with buffer `bid` are, and whether
 * the kernel is done with that buffer (it is ours to give back after the
 * callback). With INC the kernel fills a buffer piece by piece, completions
 * in the order it filled them; a completion without bytes took none (the
 * kernel keeps the buffer, BUF_MORE or not). */
static char *buf_of(uring_state *st, unsigned bid, int res, unsigned flags, int *done)
{
    char *base = st->bufs + (size_t)bid * st->buf_size;
    *done = 1;
    if (!st->inc) return base;
    char *p = base + st->inc_off[bid];
    if (res <= 0) {
        *done = 0;
    } else if (flags & IORING_CQE_F_BUF_MORE) {
        st->inc_off[bid] += (uint32_t)res;
        *done = 0;
    } else {
        st->inc_off[bid] = 0;
    }
    return p;
}

/* With INC a recv is cut where the current buffer ends: a segment the
 * socket holds whole came in two completions, and other streams' could run
 * between them (`listen -k` mixed 500 clients' lines). So a recv that
 * ended its buffer short of RECV_MAX takes what the socket still holds
 * now, as one read(2) on a readiness loop would have: a system call or
 * two per 64 KiB of traffic. An error or EOF is left to the next recv
 * request. Returns the bytes, in st->joined. */
static int join_rest(uring_state *st, int fd, const char *buf, int res)
{
    memcpy(st->joined, buf, (size_t)res);
    /* Only bytes it holds (FIONREAD): a recv that found none would take a
     * pending error (a reset) that the next request must report. */
    int avail = 0;
    if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0) return res;
    size_t want = RECV_MAX - (size_t)res;
    if ((size_t)avail < want) want = (size_t)avail;
    ssize_t n = recv(fd, st->joined + res, want, MSG_DONTWAIT);
    return res + (n > 0 ? (int)n : 0);
}

static void req_done(csock_loop *loop, uintptr_t tagged, int res, unsigned flags)
{
    uring_state *st = loop->bstate;
    csock__ioreq *r = (csock__ioreq *)(tagged & ~(uintptr_t)1);
    /* A multishot recv's arrival: the request stays in flight. */
    int more = r->mshot && (flags & IORING_CQE_F_MORE);
    if (!more && r->cancelled == CANCEL_QUEUED) unqueue_cancel(st, r); /* done before it was asked */
    if (!more && r->mshot && res == -EINVAL) {
        loop->io_mshot = 0; /* refused (see prep_recv): single recvs from now on */
        res = -ENOBUFS; /* made again, single, at the next wait */
    }
    if (res == -ENOBUFS && r->cancelled) res = -ECANCELED;
    if (res == -ENOBUFS && r->op == CSOCK__IO_RECV) { /* no buffer free: again next wait */
        r->next = NULL;
        if (st->nobuf_tail)
            st->nobuf_tail->next = r;
        else
            st->nobuf_head = r;
        st->nobuf_tail = r;
        return;
    }
    char *buf = NULL;
    unsigned bid = 0;
    int done = 0;
    if (flags & IORING_CQE_F_BUFFER) {
        bid = flags >> IORING_CQE_BUFFER_SHIFT;
        buf = buf_of(st, bid, res, flags, &done);
        /* Not for a multishot recv: its next arrival may be posted already,
         * and bytes read past it would come out of order. */
        if (st->inc && done && res > 0 && res < RECV_MAX && !r->cancelled && !r->mshot) {
            res = join_rest(st, r->fd, buf, res);
            buf = st->joined;
        }
    }
    if (!more) {
        st->nreq--;
        r->busy = 0;
        loop->active--;
    }
    loop->io_cb(loop, r, res, buf);
    if (buf && done) give_back(st, bid); /* the callback copied what it kept */
}

/* Before waiting: recvs that found no buffer go again (callbacks have given
 * buffers back since), and cancelled ones get their callback. */
static int retry_waiting(csock_loop *loop)
{
    uring_state *st = loop->bstate;
    csock__ioreq *r = st->nobuf_head;
    st->nobuf_head = st->nobuf_tail = NULL;
    for (csock__ioreq *next; r; r = next) {
        next = r->next;
        if (prep_recv(st, r, 0, 0) < 0) {
            r->next = st->cancelled; /* no SQE at all: report it as failed */
            st->cancelled = r;
        }
    }
    int n = 0;
    while ((r = st->cancelled)) {
        st->cancelled = r->next;
        st->nreq--;
        r->busy = 0;
        loop->active--;
        loop->io_cb(loop, r, -ECANCELED, NULL);
        n++;
    }
    return n;
}

static short to_poll(unsigned ev)
{
    return (short)(((ev & CSOCK_READABLE) ? POLLIN : 0) | ((ev & CSOCK_WRITABLE) ? POLLOUT : 0));
}

/* Never fails: without a submission slot the poll is made at the next
 * wait (a watcher that silently stopped would hang its owner). */
static void arm(uring_state *st, uint32_t idx)
{
    slot *sl = &st->slots[idx];
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe) {
        if (!sl->retry) st->nretry++;
        sl->retry = 1;
        return;
    }
    io_uring_prep_poll_add(sqe, sl->w->fd, (unsigned)to_poll(sl->w->events ? sl->w->events : 0));
    io_uring_sqe_set_data64(sqe, tag(idx, sl->gen));
    sl->armed = 1;
    st->armed = 1;
}

static int submit_remove(uring_state *st, uint64_t poll_tag)
{
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe) return -ENOMEM;
    io_uring_prep_poll_remove(sqe, poll_tag);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
    return 0;
}

/* Never fails either: the new generation makes the old poll stale at once;
 * its removal only lets the kernel release it sooner. */
static void disarm(uring_state *st, uint32_t idx)
{
    slot *sl = &st->slots[idx];
    if (sl->armed && submit_remove(st, tag(idx, sl->gen)) < 0 && st->nrm < RM_BACKLOG)
        st->rm_backlog[st->nrm++] = tag(idx, sl->gen);
    sl->armed = 0;
    sl->gen = (sl->gen + 1) & 0x7fffffff; /* 31 bits fit the tag; the old request is stale now */
}

/* Before waiting: the polls, removals and cancels that found no submission
 * slot. Returns 1 if some still wait (the wait must not block then). */
static int sync_pending(uring_state *st)
{
    while (st->nrm && submit_remove(st, st->rm_backlog[st->nrm - 1]) == 0) st->nrm--;
    while (st->cancel_q) {
        csock__ioreq *r = st->cancel_q;
        if (submit_cancel(st, r) < 0) break;
        st->cancel_q = r->next;
        r->cancelled = 1;
    }
    for (uint32_t idx = 0; st->nretry && idx < st->nslots; idx++) {
        slot *sl = &st->slots[idx];
        if (!sl->retry) continue;
        sl->retry = 0;
        st->nretry--;
        if (sl->w && !sl->armed && sl->w->events) arm(st, idx); /* may set retry again */
    }
    return st->nrm || st->cancel_q || st->nretry;
}

static int alloc_slot(uring_state *st, csock__watcher *w)
{
    uint32_t idx;
    if (st->nfree) {
        idx = st->free_list[--st->nfree];
    } else {
        if (st->nslots == st->cap) {
            uint32_t cap = st->cap ? st->cap * 2 : 64;
            slot *s = realloc(st->slots, cap * sizeof *s);
            if (!s) return -ENOMEM;
            st->slots = s;
            uint32_t *fl = realloc(st->free_list, cap * sizeof *fl);
            if (!fl) return -ENOMEM;
            st->free_list = fl;
            st->cap = cap;
        }
        idx = st->nslots++;
        st->slots[idx].gen = 0;
    }
    st->slots[idx].w = w;
    st->slots[idx].armed = 0;
    st->slots[idx].retry = 0;
    w->index = (int)idx;
    return 0;
}

static int ur_update(csock_loop *loop, csock__watcher *w, unsigned old_ev, unsigned new_ev)
{
    uring_state *st = loop->bstate;
    int rc;
    if (!old_ev) {
        if ((rc = alloc_slot(st, w)) < 0) return rc;
        w->events = new_ev; /* arm() reads the mask from the watcher */
        arm(st, (uint32_t)w->index);
        return 0;
    }
    uint32_t idx = (uint32_t)w->index;
    disarm(st, idx);
    if (!new_ev) {
        if (st->slots[idx].retry) st->nretry--;
        st->slots[idx].retry = 0;
        st->slots[idx].w = NULL;
        st->free_list[st->nfree++] = idx;
        w->index = -1;
        return 0;
    }
    unsigned keep = w->events;
    w->events = new_ev;
    arm(st, idx);
    w->events = keep; /* the loop core sets it once we return */
    return 0;
}

static unsigned from_poll(int res)
{
    unsigned rev = 0;
    if (res & (POLLIN | POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) rev |= CSOCK_READABLE;
    if (res & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)) rev |= CSOCK_WRITABLE;
    return rev;
}

/* Up to `max` (at most 256) completions, oldest first: collected first,
 * dispatched after (callbacks queue new requests). Returns how many. */
static int dispatch_batch(csock_loop *loop, unsigned max)
{
    uring_state *st = loop->bstate;
    struct io_uring_cqe *cqe;
    uint64_t done[256];
    int res[256];
    unsigned flags[256];
    unsigned n = 0, head;
    if (max > 256) max = 256;
    io_uring_for_each_cqe(&st->ring, head, cqe)
    {
        if (n == max) break;
        done[n] = cqe->user_data;
        flags[n] = cqe->flags;
        res[n++] = cqe->res;
    }
    io_uring_cq_advance(&st->ring, n);
    for (unsigned i = 0; i < n; i++) {
        if (done[i] == CANCEL_TAG) continue;
        if (done[i] & 1) {
            req_done(loop, (uintptr_t)done[i], res[i], flags[i]);
            continue;
        }
        uint32_t idx = (uint32_t)(done[i] >> 1) & 0x7fffffff, gen = (uint32_t)(done[i] >> 33);
        if (idx >= st->nslots) continue;
        slot *sl = &st->slots[idx];
        if (!sl->w || sl->gen != gen) continue; /* stale: stopped or changed since */
        sl->armed = 0;
        csock__watcher *w = sl->w;
        if (res[i] >= 0) csock__watcher_dispatch(loop, w, from_poll(res[i]));
        else if (res[i] != -ECANCELED) csock__watcher_dispatch(loop, w, w->events);
        /* One-shot: re-arm if the watcher still wants events (level-triggered).
         * The callback may have grown (moved) the slot table: look again. */
        sl = &st->slots[idx];
        if (sl->w == w && sl->gen == gen && !sl->armed && w->events) arm(st, idx);
    }
    return (int)n;
}

/* io_uring_enable_rings(), which liburing 2.3 declares but does not export. */
static int enable_ring(uring_state *st)
{
    return (int)syscall(__NR_io_uring_register, st->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                        NULL, 0);
}

/* A wait on a thread that does not own the ring (SINGLE_ISSUER), which
 * could only fail in the kernel (-EEXIST): a loop freed by another thread
 * than the one that ran it (csock_server_free), serving what was posted to
 * it after its run ended. Posts and timers need no ring: wait on the
 * eventfd alone. Requests in flight or watchers would never be heard of
 * here: that is a caller's error. */
static int foreign_wait(csock_loop *loop, int timeout_ms)
{
    uring_state *st = loop->bstate;
    if (st->nreq || st->nslots - st->nfree > (loop->wake_w.index >= 0)) return -EEXIST;
    struct pollfd p = {.fd = loop->wake_fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    csock_loop_update_time(loop);
    if (n > 0) loop->wake_w.cb(loop, &loop->wake_w, CSOCK_READABLE);
    return n > 0;
}

/* The first wait: the ring becomes this thread's (SINGLE_ISSUER), and so
 * does a registered ring fd, which spares each io_uring_enter the lookup
 * of the ring's file (a thread's registered rings are its own). */
static int take_ring(uring_state *st)
{
    if (enable_ring(st) < 0) return -errno;
    st->disabled = 0;
    st->owner = pthread_self();
    io_uring_register_ring_fd(&st->ring); /* optional: without it, enter by the fd */
    return 0;
}

#define DEFER_BATCH 16 /* an enter that posted this many may have left more */
#define DEFER_ROUNDS 16

/* Submit, and wait up to timeout_ms for a completion. liburing does not
 * ask the kernel for events when the completion queue holds some already
 * (its wait is satisfied); with DEFER_TASKRUN that would leave the
 * deferred completions (a cancelled recv's, say) unposted for as long as
 * other completions keep the queue non-empty, which a flood of ready polls
 * does for ever: then submit and run them without waiting. */
static int enter(uring_state *st, int timeout_ms)
{
    if (st->defer && (timeout_ms == 0 || io_uring_cq_ready(&st->ring)))
        return io_uring_submit_and_get_events(&st->ring);
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    return io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
}

/* May ur_wait enter again in this wait? Not after a stop; nor, once a
 * watcher's poll was armed this round (a level-triggered one re-armed by
 * its dispatch, or one a callback started), while the loop's other phases
 * have work: the next round could call that watcher again before them,
 * which epoll and poll never do. */
static int round_again(csock_loop *loop)
{
    uring_state *st = loop->bstate;
    if (atomic_load(&loop->stop_flag)) return 0;
    return !(st->armed && csock__loop_phases_due(loop));
}

static int ur_wait(csock_loop *loop, int timeout_ms)
{
    uring_state *st = loop->bstate;
    if (st->disabled) {
        int rc = take_ring(st);
        if (rc < 0) return rc;
    } else if (foreign(st)) {
        return foreign_wait(loop, timeout_ms);
    }
    if (st->nsend) prep_sends(loop);
    if ((st->nobuf_head || st->cancelled) && retry_waiting(loop)) timeout_ms = 0;
    if (st->nsend) prep_sends(loop); /* queued by those callbacks */
    if (st->nsend) timeout_ms = 0;   /* some found no submission slot */
    if ((st->nrm || st->cancel_q || st->nretry) && sync_pending(st)) timeout_ms = 0;
    int total = 0;
    for (int round = 0; round < DEFER_ROUNDS; round++) {
        if (round && st->nsend) prep_sends(loop); /* queued by the last round's callbacks */
        unsigned before = io_uring_cq_ready(&st->ring);
        int rc = enter(st, round ? 0 : timeout_ms);
        submitted(st);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) return rc;
        if (!round) csock_loop_update_time(loop);
        unsigned ready = io_uring_cq_ready(&st->ring), got = ready - before;
        /* What had completed when the enter returned, batch by batch
         * (bounded, so timers and the other phases get their turn under a
         * flood); not what lands meanwhile: a full submission queue is
         * handed to the kernel mid-dispatch (get_sqe), and a re-armed poll
         * on a still-ready fd completes there at once: dispatched in this
         * pass, it would call its watcher again before the deferred calls
         * and posts its first call made (seen with 1,500 pipes). */
        st->armed = 0;
        for (int batch = 0; batch < 64 && ready; batch++) {
            int n = dispatch_batch(loop, ready);
            total += n;
            ready -= (unsigned)n;
            if (n < 256) break;
        }
        /* With DEFER_TASKRUN an enter posts at most ~20 deferred
         * completions (6.18): when it posted that many, more may wait.
         * Enter again now, which also sends what the callbacks queued,
         * rather than leave them to the next iteration (a NOWAIT run would
         * see 20 a turn, a close of 600 streams 30 turns), unless the
         * callbacks armed a watcher and left the loop's other phases work
         * (round_again). */
        if (!st->defer || got < DEFER_BATCH || !round_again(loop)) break;
    }
    return total;
}

const csock__backend csock__backend_uring = {
    .name = "uring", .init = ur_init, .fini = ur_fini, .update = ur_update, .wait = ur_wait,
    .recv = ur_recv, .send = ur_send, .cancel = ur_cancel, .forget = ur_forget,
};
