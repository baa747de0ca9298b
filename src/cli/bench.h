/* csock bench: the pieces its files share. bench.c parses the options,
 * runs the threads and prints the results; bench_run.c is one thread: a
 * loop, its connections and its load schedule. */
#ifndef CSOCK_CLI_BENCH_H
#define CSOCK_CLI_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cli/bench_hist.h"
#include "cli/cli.h"

/* What a message is and how its answer is checked. */
typedef enum { BENCH_ECHO, BENCH_UPPER, BENCH_HTTP } bench_mode;

/* Errors by kind, counted over the whole run (warm-up included). */
enum {
    BENCH_ERR_REFUSED, /* connect refused (or no such Unix socket) */
    BENCH_ERR_RESET,   /* reset, broken pipe, or closed by the server mid-run */
    BENCH_ERR_TIMEOUT, /* a connect, or a message unanswered for --timeout */
    BENCH_ERR_WRONG,   /* an answer byte that is not the one expected */
    BENCH_ERR_STATUS,  /* --http: a status other than 2xx (the connection goes on) */
    BENCH_ERR_OTHER,   /* TLS and anything else */
    BENCH_ERR_KINDS
};
extern const char *const bench_err_names[BENCH_ERR_KINDS];

typedef struct bench_opts {
    const char *target;      /* ADDR as given */
    csock_addr addr;
    csock_tls_ctx *tls;      /* tls:// only */
    bench_mode mode;
    size_t size;             /* bytes a message, the upper service's '\n' included */
    unsigned conns, depth, threads;
    double rate;             /* messages a second over all connections; 0: closed loop */
    uint64_t duration_ns, warmup_ns, timeout_ns;
    const char *json;        /* --json FILE or NULL */
    int live;                /* stderr is a terminal: the live line */
    /* The bytes of every message come from `send_pat` and are checked
     * against `want_pat` (the same for echo, in upper case for upper). */
    char *send_pat, *want_pat;
    size_t body;             /* bytes from the pattern; the rest is "\n" */
    const char *http_path;   /* --http PATH: send_pat is the request, sent whole */
    int connect_each;        /* --connect: a new connection for every message */
    int ws;                  /* a ws:// or wss:// ADDR: messages are WebSocket
                                messages (binary for echo, text for upper) */
    int udp;                 /* udp://: a datagram a message, on a connected socket */
    int streams;             /* --streams: plain TCP and Unix through csock streams too */
    int raw;                 /* the sockets are driven directly (bench_raw.c) */
    const char *tls_groups;  /* --tls-groups LIST, or NULL for csock's */
    unsigned pipeline;       /* --http --pipeline N: N requests written at once,
                                the next N when all are answered (1: off) */
    const char *method;      /* --http: GET unless --method */
    const char *headers[32]; /* --http --header lines, as given */
    unsigned nheaders;
    char *req_body;          /* --http --body (read from @FILE), or NULL */
    size_t req_body_len;
    const char *plot;        /* --plot FILE.svg or NULL */
    const char *label;       /* --label: this run's name in the JSON and plots */
    const char *earlier[8];  /* --plot: earlier runs' --json files to overlay */
    unsigned nearlier;
    int server_pid;          /* --server-pid: its CPU time is measured too (0: not) */
    uint64_t series_ns;      /* throughput over time: messages counted by interval */
    unsigned nseries;        /* intervals in the measured window */
} bench_opts;

/* What one thread measured; merged into one at the end. */
typedef struct bench_stats {
    uint64_t msgs, bytes;  /* completed inside the measured window */
    uint64_t unsent;       /* open loop: due while no connection was up */
    uint64_t connects;     /* connections made */
    uint64_t answered;     /* of the --conns connections, those that had an
                              answer checked (over the whole run) */
    uint64_t up_at_end;    /* connections up when the run ended */
    uint64_t window_ns;    /* how long was measured (shorter when interrupted) */
    uint64_t err[BENCH_ERR_KINDS];
    bench_hist hist;       /* latency of the window's messages, us */
    uint64_t status[600];  /* --http: responses in the window by status code */
    uint64_t *series;      /* nseries counts: messages answered in each interval */
    double load_cpu_s;     /* csock bench's own user+sys CPU over the window */
    double server_cpu_s;   /* --server-pid's, over the same window; < 0: unknown */
} bench_stats;

typedef struct bench_thread {
    const bench_opts *o;
    unsigned index, first_conn, nconns;
    uint64_t t_start, t_measure;        /* CLOCK_MONOTONIC ns, shared by all */
    _Atomic uint64_t t_end;             /* brought forward by SIGINT/SIGTERM */
    bench_stats st;
    /* For the live line, read by the main thread. */
    _Atomic uint64_t live_msgs, live_errs, live_p99;
    pthread_t tid;
    int rc; /* 0, or why the thread could not run (its loop) */
} bench_thread;

/* csock bench ADDR ...: argv[0] is "bench" (declared here, not in cli.h,
 * to keep that file to its owners this session). */
int cli_bench(int argc, char **argv);

/* The thread's body: run its connections until t_end. */
void *bench_thread_main(void *arg);

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now_ns(void);

/* Results (bench_report.c). */
void bench_fmt_us(uint64_t us, char *buf, size_t size); /* "123 us", "4.56 ms" ... */
const char *bench_mode_name(const bench_opts *o);
void bench_write_json(FILE *f, const bench_opts *o, const bench_stats *st);
/* The table (or JSON to stdout with --json -); the exit status. */
int bench_report(const bench_opts *o, const bench_stats *st);

/* Pattern period: prime, so offsets spread over all of it. */
#define BENCH_PAT 4093

#endif
