/* Shared pieces of the csock command: errors people read, option parsing
 * helpers and the subcommand table. */
#ifndef CSOCK_CLI_H
#define CSOCK_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "csock/csock.h"

/* Exit statuses, documented in csock(1). */
enum {
    CLI_OK = 0,
    CLI_ERR = 1,      /* a runtime failure: connect refused, I/O error */
    CLI_USAGE = 2,    /* a wrong argument */
};

/* One line to stderr: "csock: <what>", then exit(status). */
_Noreturn void cli_die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line to stderr, no exit. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse an address argument or die with a one-line reason. `flags` as for
 * csock_addr_resolve(). */
void cli_addr(const char *text, int flags, csock_addr *out);
/* Parse a non-negative number (with an optional unit for durations via
 * cli_seconds) or die naming the option. */
unsigned long cli_ulong(const char *opt, const char *text, unsigned long max);
/* Seconds, possibly fractional ("1.5"), as milliseconds. */
uint64_t cli_seconds(const char *opt, const char *text);
/* Die with "unknown option" / "missing argument" for a getopt error char. */
_Noreturn void cli_bad_option(const char *cmd, int c, int optopt_char, const char *arg);

/* Block SIGPIPE (writes report EPIPE instead) and make stdout line-clean. */
void cli_init_process(void);
/* Raise RLIMIT_NOFILE to its hard limit: servers hold many connections. */
void cli_raise_nofile(void);

/* Subcommands: each takes argc/argv with argv[0] the command's name. */
int cli_serve(int argc, char **argv);
int cli_connect(int argc, char **argv);
int cli_listen(int argc, char **argv);
/* csock serve http DIR ADDR...: argv[0] is "http". */
int cli_serve_http(int argc, char **argv);

#endif
